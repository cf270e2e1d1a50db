"""Which hyperparameters tuning searches in one grid cell, and where (plain data, no Optuna).

Per issue #4: the registry declares a default search range for each tunable parameter; the
spec's ``tuning.search_space`` overrides ranges (and can add parameters the registry does not
tune by default, such as ``eps``); a parameter fixed in the axis entry stays fixed. The tuning
module turns these dicts into Optuna distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench_service.sweep.checks import param_space
from bench_service.sweep.spec import AxisEntry, SweepSpec
from bench_service.vocab import AXIS_OF_SPEC, TUNED_SPEC_AXES


def cell_search_space(spec: SweepSpec, entries: Sequence[AxisEntry]) -> dict[str, dict[str, Any]]:
    """The searched parameters of a cell's optimizer, scheduler and regularizer entries.

    Returns ``{"optimizer.lr": {"kind": "float", "low": 1e-5, "high": 0.1, "log": True},
    "scheduler.interval": {"kind": "choice", "choices": [...]}, ...}`` in declaration order.
    """
    if spec.tuning is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for axis, entry in zip(TUNED_SPEC_AXES, entries, strict=True):
        overrides = spec.tuning.search_space.get(entry.name, {})
        for hp in param_space(axis, entry.name):
            if hp.name in entry.params:
                continue  # fixed by the user: not tuned
            if hp.name in overrides:
                rng = overrides[hp.name].to_dict()
            elif hp.tunable:
                rng = {"low": hp.low, "high": hp.high, "log": hp.log}
            else:
                continue
            out[f"{AXIS_OF_SPEC[axis]}.{hp.name}"] = {"kind": hp.kind, **rng}
    return out
