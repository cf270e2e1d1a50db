"""Reading a spec's YAML: safe loading, with two traps of plain PyYAML closed.

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

from bench_service.sweep.errors import SpecError

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # let PyYAML report the unhashable key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    "spec", f"duplicate key {key!r} at line {line} (first at line {seen[key]})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# Replace the YAML 1.1 float resolver (copy the table first: it is shared with SafeLoader).
SpecLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT, list("-+0123456789.")
)


def parse_yaml(text: str, source: str = "spec") -> Any:
    """Parse YAML text; syntax errors become ``SpecError("spec", "... line L, column C ...")``."""
    try:
        return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        name = "" if source == "spec" else f" in {source}"
        raise SpecError("spec", f"invalid YAML{name}{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise SpecError("spec", f"invalid YAML: {exc}") from None


def looks_like_path(value: str | Path) -> bool:
    """Whether ``load_spec``'s argument names a file rather than holding YAML text.

    A ``Path`` always names a file; a string does unless it spans lines, starts a flow
    mapping or contains ``key: value``; an existing file always wins.
    """
    if isinstance(value, Path):
        return True
    if "\n" in value or not value.strip():
        return False
    if Path(value).is_file():
        return True
    stripped = value.strip()
    return not (stripped.startswith("{") or ": " in stripped or stripped.endswith(":"))


def read_spec_file(path: Path) -> str:
    """The file's text, or a ``SpecError`` naming the path (missing, a directory, unreadable)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("spec", f"no such file: {str(path)!r}") from None
    except IsADirectoryError:
        raise SpecError("spec", f"{str(path)!r} is a directory, not a spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("spec", f"cannot read {str(path)!r}: {exc}") from None
