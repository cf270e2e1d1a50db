"""``examples/all_algorithms.yaml`` covers exactly the built-in entries (never plug-ins)."""

from __future__ import annotations

from typing import Any

import yaml
from _helpers import ROOT

from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS
from bench_service.engine.catalog import (
    all_algorithms_axes,
    all_algorithms_yaml,
    main,
    workload_for_every_regularizer,
)
from bench_service.engine.registry import Registry

EXAMPLE = ROOT / "examples" / "all_algorithms.yaml"
REGEN = "python -m bench_service.engine.catalog examples/all_algorithms.yaml"
_REGISTRY: dict[str, Registry[Any]] = {
    "optimizers": OPTIMIZERS, "schedulers": SCHEDULERS, "regularizers": REGULARIZERS,
}


def example_axes() -> dict[str, list[str]]:
    spec = yaml.safe_load(EXAMPLE.read_text())
    return {axis: spec[axis] for axis in ("workloads", *_REGISTRY)}


def expected_axes() -> dict[str, list[str]]:
    return {
        "workloads": [workload_for_every_regularizer()],
        **{axis: registry.builtin_names() for axis, registry in _REGISTRY.items()},
    }


def test_example_is_generated_from_every_builtin_entry_and_nothing_else() -> None:
    """One test, so that a new built-in entry fails exactly one, with the fix in its message."""
    assert all_algorithms_axes() == expected_axes()
    assert EXAMPLE.read_text() == all_algorithms_yaml(), f"out of date: run `{REGEN}`"
    assert example_axes() == expected_axes()
    assert main([str(EXAMPLE), "--check"]) == 0


def test_example_workload_takes_every_regularizer() -> None:
    cls = WORKLOADS.get(example_axes()["workloads"][0])
    assert cls.supports_dropout
    reg_norms = {n for n in REGULARIZERS.builtin_names() if REGULARIZERS.get(n).arch is not None}
    assert reg_norms - {"dropout"} <= set(cls.supported_norms)
