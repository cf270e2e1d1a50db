"""Ray execution of sweeps: the driver and its one loop, trial sources, the trial task.

Names are imported on first use, so a light module of the package (``cluster.runs``) is
imported without Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_service.cluster.loop import Cancelled, Job, SweepOutcome, TrialSource, run_loop
    from bench_service.cluster.session import RaySession, ray_session

_EXPORTS = {
    "Cancelled": "bench_service.cluster.loop",
    "Job": "bench_service.cluster.loop",
    "SweepOutcome": "bench_service.cluster.loop",
    "TrialSource": "bench_service.cluster.loop",
    "run_loop": "bench_service.cluster.loop",
    "RaySession": "bench_service.cluster.session",
    "ray_session": "bench_service.cluster.session",
}

__all__ = ["Cancelled", "Job", "RaySession", "SweepOutcome", "TrialSource", "ray_session",
           "run_loop"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
