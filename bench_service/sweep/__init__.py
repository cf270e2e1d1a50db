"""Sweeps: the YAML spec, its validation, and the planner that expands it into trials.

Layering: this package imports the engine only (no Ray, no SQL, no Optuna). Names are
resolved lazily (PEP 562), so importing ``SpecError`` does not import torch; the registries
load on the first ``parse_spec``/``load_spec``/``plan_sweep``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_service.sweep.diff import diff_specs
    from bench_service.sweep.errors import SpecError
    from bench_service.sweep.loading import load_spec, parse_spec
    from bench_service.sweep.plan import (
        PlannedCell,
        PlannedTrial,
        SkippedCell,
        SweepPlan,
        plan_sweep,
    )
    from bench_service.sweep.spec import AxisEntry, SweepSpec, TuningSpec, spec_hash

_EXPORTS = {
    "AxisEntry": "bench_service.sweep.spec",
    "PlannedCell": "bench_service.sweep.plan",
    "PlannedTrial": "bench_service.sweep.plan",
    "SkippedCell": "bench_service.sweep.plan",
    "SpecError": "bench_service.sweep.errors",
    "SweepPlan": "bench_service.sweep.plan",
    "SweepSpec": "bench_service.sweep.spec",
    "TuningSpec": "bench_service.sweep.spec",
    "diff_specs": "bench_service.sweep.diff",
    "load_spec": "bench_service.sweep.loading",
    "parse_spec": "bench_service.sweep.loading",
    "plan_sweep": "bench_service.sweep.plan",
    "spec_hash": "bench_service.sweep.spec",
}

__all__ = [
    "AxisEntry",
    "PlannedCell",
    "PlannedTrial",
    "SkippedCell",
    "SpecError",
    "SweepPlan",
    "SweepSpec",
    "TuningSpec",
    "diff_specs",
    "load_spec",
    "parse_spec",
    "plan_sweep",
    "spec_hash",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
