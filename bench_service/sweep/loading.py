"""Loading a spec: YAML text or file -> shape check (``spec``) -> meaning check (``checks``).

This is the one module that joins the two stages, so that neither imports the other:
``spec`` (pydantic models, no registry, no torch) stays importable by the lightest command,
and ``checks`` (the registries) builds on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench_service.sweep.checks import check_spec
from bench_service.sweep.errors import SpecError, convert_validation_error, shown
from bench_service.sweep.spec import SweepSpec, fields_at
from bench_service.sweep.yaml_io import looks_like_path, parse_yaml, read_spec_file


def parse_spec(data: Any) -> SweepSpec:
    """Validate plain data (a dict from YAML/JSON) into a canonical ``SweepSpec``.

    Raises:
        SpecError: On the first problem (all problems in ``.errors``).
    """
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else f"{type(data).__name__} {shown(data)}"
        raise SpecError(
            "spec", f"the spec must be a mapping (name, workloads, optimizers, ...), got {got}"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise SpecError("spec", f"keys must be strings, got {shown(bad_keys[0])}")
    try:
        spec = SweepSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise convert_validation_error(exc, fields_at) from None
    return check_spec(spec)


def load_spec(path_or_text: str | Path) -> SweepSpec:
    """Read a spec from a YAML file (a path) or YAML text, and validate it.

    A ``Path`` or a one-line string without ``key: value`` is a file name; anything else is
    YAML text.

    Raises:
        SpecError: A missing/unreadable file or bad YAML (field ``spec``, with line and
            column), a document over the size bounds of ``yaml_io``, or any problem
            ``parse_spec`` finds.
    """
    if looks_like_path(path_or_text):
        path = Path(path_or_text)
        return parse_spec(parse_yaml(read_spec_file(path), str(path)))
    return parse_spec(parse_yaml(str(path_or_text)))


__all__ = ["load_spec", "parse_spec"]
