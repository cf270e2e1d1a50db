"""Ray execution of sweeps: a session helper, the trial task, the metric writer actor."""

from __future__ import annotations

from bench_service.cluster.session import RaySession, ray_session
from bench_service.cluster.sweep_runner import SweepOutcome, run_planned_trials

__all__ = ["RaySession", "SweepOutcome", "ray_session", "run_planned_trials"]
