"""``SpecError``: every problem with a sweep spec, as one error type naming the field.

The CLI prints ``str(error)`` and exits with code 2; the HTTP API can return ``errors`` as a
list. Pydantic's ``ValidationError`` is converted here so that no caller ever sees pydantic's
wording or its ``loc`` tuples: fields are dotted paths in the spec's own terms
(``optimizers[2].params.lr``, ``tuning.search_space.adam.lr.low``).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from bench_service.engine.errors import ConfigError
from bench_service.engine.registry import closest

#: Longest echo of a user's value in a message (``shown``), in characters.
SHOWN_CHARS = 80
#: Longest message a ``SpecError`` keeps: a backstop for messages built from many parts
#: (one line per incompatible cell), so that no input can make an error megabytes long.
MAX_MESSAGE_CHARS = 4000

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 8, 8
_REPR.maxset, _REPR.maxstring, _REPR.maxother = 8, SHOWN_CHARS, SHOWN_CHARS
_REPR.maxlong = 40


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters with an ellipsis: how messages echo input.

    Built with ``reprlib`` so that even a huge value (a list of millions of items, a
    400-digit integer) costs a few dozen items to show, never a full ``repr``.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = 40) -> str:
    """Plain text (a key, a name, a parser's message) cut to ``limit`` characters, no quotes."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clamp(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}… ({cut} more characters)"


class SpecError(ConfigError):
    """A sweep spec is invalid.

    Attributes:
        field: Dotted path of the first problem (``""`` or ``"spec"`` for the document).
        message: Short, human description of the first problem.
        errors: Every problem found, as ``(field, message)`` pairs, the first one first.
    """

    def __init__(
        self,
        field: str,
        message: str,
        errors: Sequence[tuple[str, str]] | None = None,
        *,
        summarised: bool = False,
    ) -> None:
        field, message = clip(field, 200), _clamp(message)
        super().__init__(field, message)
        self.errors: list[tuple[str, str]] = (
            [(clip(f, 200), _clamp(m)) for f, m in errors] if errors else [(field, message)]
        )
        #: The message already covers every entry of ``errors`` (no "and N more").
        self.summarised = summarised

    def __str__(self) -> str:
        head = f"{self.field}: {self.message}" if self.field else self.message
        more = 0 if self.summarised else len(self.errors) - 1
        return head + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else "")

    @classmethod
    def collect(cls, errors: Iterable[tuple[str, str]]) -> SpecError | None:
        """One error reporting the first of ``errors`` and keeping them all, or ``None``."""
        errs = list(errors)
        if not errs:
            return None
        return cls(errs[0][0], errs[0][1], errs)

    @classmethod
    def from_config_error(cls, exc: ConfigError, prefix: str = "", new: str = "") -> SpecError:
        """Re-raise an engine error in spec terms: its field's ``prefix`` becomes ``new``.

        The engine names fields for one trial (``optimizer.params.lr``); a spec has lists of
        entries, so ``prefix="optimizer"``, ``new="optimizers[3]"`` gives
        ``optimizers[3].params.lr``.
        """
        return cls(reprefix(exc.field, prefix, new), exc.message)


def reprefix(field: str, prefix: str, new: str) -> str:
    """Replace a leading ``prefix`` path component of ``field`` by ``new`` (else prepend it)."""
    if not new or field == new or field.startswith((new + ".", new + "[")):
        return field
    if field == prefix:
        return new
    if field.startswith(prefix + ".") or field.startswith(prefix + "["):
        return new + field[len(prefix):]
    return f"{new}.{field}" if field else new


def loc_to_path(loc: Sequence[int | str]) -> str:
    """``("optimizers", 2, "params", "lr")`` → ``"optimizers[2].params.lr"``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker: the mapping key itself is at fault
            out += " (a key)"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            name = clip(str(part))
            out += f".{name}" if out else name
    return out


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "finite_number": "a finite number",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_OPS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def convert_validation_error(
    exc: ValidationError, fields_at: Callable[[tuple[int | str, ...]], list[str]]
) -> SpecError:
    """Turn pydantic's errors into one ``SpecError`` (first error reported, all kept).

    ``fields_at(loc)`` returns the valid field names of the model at ``loc`` so that an
    unknown key gets a "did you mean" hint and the list of valid keys.
    """
    errors: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        value = err.get("input")
        if kind == "extra_forbidden":
            valid = fields_at(loc[:-1])
            key = clip(str(loc[-1]))
            msg = f"unknown field{closest(key, valid)}; valid: {', '.join(valid)}"
        elif kind == "missing":
            msg = "is required"
        elif kind in _TYPE_WORDS:
            msg = f"must be {_TYPE_WORDS[kind]}, got {shown(value)}"
        elif kind in _OPS:
            bound = next(iter(ctx.values()), "?")
            bound = f"{bound:g}" if isinstance(bound, float) else bound
            msg = f"must be {_OPS[kind]} {bound}, got {shown(value)}"
        elif kind in ("too_short", "string_too_short"):
            msg = "must not be empty"
        elif kind in ("too_long", "string_too_long"):
            what = "characters" if isinstance(value, str) else "items"
            msg = f"must have at most {ctx.get('max_length')} {what}"
        elif kind in ("value_error", "assertion_error"):
            msg = str(ctx.get("error", err["msg"]))
        else:
            msg = f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {shown(value)}"
        errors.append((loc_to_path(loc), msg))
    found = SpecError.collect(errors)
    assert found is not None  # a ValidationError always carries at least one error
    return found
