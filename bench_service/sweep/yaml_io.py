"""Reading a spec's YAML: safe loading, bounded, with two traps of plain PyYAML closed.

* Size is bounded before any Python object is built: the document's bytes, its nesting depth
  (checked on the parser's events, so deep nesting is refused instead of overflowing a stack)
  and its size *with aliases expanded* (counted over the node graph, each node once, so an
  alias bomb of 10^9 leaves is refused after visiting a few dozen nodes). PyYAML itself
  shares an aliased object rather than copying it, but everything after it (validation,
  JSON, error messages) walks the expansion.
* YAML merge keys (``<<: *base``) work: a key merged in may be overridden by the mapping's
  own keys, as the merge-key spec says; only the mapping's own keys must be distinct.
* PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a *string*; every spec writes learning
  rates that way, so the loader here also reads ``1e-3`` and ``5E+2`` as floats (YAML 1.2
  behaviour).
* A repeated key (two ``optimizers:`` lines) silently keeps the last one in PyYAML; here it
  is an error naming the key and its line, since the first list would vanish unnoticed.

Every problem is a ``SpecError`` with field ``spec`` and, for syntax errors, line and column.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bench_service.sweep.errors import SpecError, clip, shown

#: Largest spec document read, in bytes of UTF-8.
MAX_DOCUMENT_BYTES = 1 << 20
#: Deepest nesting of sequences and mappings (a spec needs about 6).
MAX_DEPTH = 50
#: Most nodes (scalars, sequences, mappings) of the document with every alias expanded.
MAX_EXPANDED_NODES = 200_000
#: Most characters of scalar text in the document with every alias expanded.
MAX_EXPANDED_CHARS = 4 << 20

_MERGE_TAG = "tag:yaml.org,2002:merge"

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def _line(node_or_event: Any) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def expanded_size(root: yaml.Node) -> tuple[int, int]:
    """``(nodes, scalar characters)`` of the document under ``root`` with aliases expanded.

    Each distinct node is visited once (an aliased node's size is memoised and added once
    per reference), iteratively, so the cost is the size of the text, not of the expansion.

    Raises:
        SpecError: A recursive alias (a node that contains itself).
    """
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            nodes, chars = 1, 0
            for child in _children(node):
                n, c = sizes[id(child)]
                nodes, chars = nodes + n, chars + c
            sizes[key] = (nodes, chars)
            on_path.discard(key)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise SpecError("spec", f"recursive YAML alias{_line(node)}: a node contains itself")
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, len(node.value))
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise SpecError(
                    "spec", f"recursive YAML alias{_line(child)}: a node contains itself"
                )
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


#: libyaml's parser where PyYAML has it (about 7 times faster), else PyYAML's own. Its
#: composer recurses in C, so nesting is checked on the event stream first (``_check_depth``).
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` from the parser's events, before composing.

    The events come lazily, so a document nested a million levels deep is refused after
    reading its first ``MAX_DEPTH`` levels.
    """
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(
                    "spec", f"nested too deeply{_line(event)} (at most {MAX_DEPTH} levels)"
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


class SpecLoader(_BaseLoader):
    """A safe loader that bounds the document's expanded size, reads ``1e-3`` as a float,
    accepts merge keys and rejects duplicate keys. Run ``_check_depth`` first."""

    def construct_document(self, node: Any) -> Any:
        nodes, chars = expanded_size(node)
        if nodes > MAX_EXPANDED_NODES or chars > MAX_EXPANDED_CHARS:
            what = (f"{nodes} nodes (at most {MAX_EXPANDED_NODES})"
                    if nodes > MAX_EXPANDED_NODES
                    else f"{chars} characters (at most {MAX_EXPANDED_CHARS})")
            raise SpecError(
                "spec", f"the document is too large once its aliases are expanded: {what}"
            )
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # ``<<``: merged keys may be overridden by the mapping's own
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # let PyYAML report the unhashable key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    "spec",
                    f"duplicate key {shown(key)} at line {line} (first at line {seen[key]})",
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# Replace the YAML 1.1 float resolver (copy the table first: it is shared with SafeLoader).
SpecLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for ch, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT, list("-+0123456789.")
)


def parse_yaml(text: str, source: str = "spec") -> Any:
    """Parse YAML text; syntax errors become ``SpecError("spec", "... line L, column C ...")``.

    Raises:
        SpecError: Bad syntax, or a document over the size bounds of this module.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise SpecError(
            "spec", f"the spec is {size} bytes; at most {MAX_DOCUMENT_BYTES} bytes are read"
        )
    try:
        _check_depth(text)
        return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = clip(exc.problem or exc.context or "syntax error", 200)
        name = "" if source == "spec" else f" in {source}"
        raise SpecError("spec", f"invalid YAML{name}{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise SpecError("spec", f"invalid YAML: {clip(str(exc), 200)}") from None
    except RecursionError:  # a merge-key chain PyYAML flattens recursively
        raise SpecError("spec", "nested too deeply (merge keys or aliases)") from None


def looks_like_path(value: str | Path) -> bool:
    """Whether ``load_spec``'s argument names a file rather than holding YAML text.

    A ``Path`` always names a file; a string does unless it spans lines, starts a flow
    mapping or sequence or contains ``key: value``; an existing file always wins.
    """
    if isinstance(value, Path):
        return True
    if "\n" in value or not value.strip():
        return False
    try:
        if Path(value).is_file():
            return True
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        pass
    stripped = value.strip()
    return not (stripped.startswith(("{", "[")) or ": " in stripped or stripped.endswith(":"))


def read_spec_file(path: Path) -> str:
    """The file's text, or a ``SpecError`` naming the path (missing, a directory, unreadable,
    or over ``MAX_DOCUMENT_BYTES``: never more than that is read)."""
    name = shown(str(path))
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("spec", f"no such file: {name}") from None
    except IsADirectoryError:
        raise SpecError("spec", f"{name} is a directory, not a spec file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError("spec", f"cannot read {name}: {clip(reason, 120)}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SpecError(
            "spec", f"{name} is larger than {MAX_DOCUMENT_BYTES} bytes, the most a spec may be"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("spec", f"cannot read {name}: not UTF-8 text ({exc.reason})") from None
