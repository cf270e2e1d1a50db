"""Plain values the store accepts and hands back (never ORM rows).

Callers above the store (sweep, cluster, CLI, API) work with these frozen dataclasses, so no
SQLAlchemy session or lazy loading ever leaks out of ``bench_service.store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench_service.vocab import (  # noqa: F401  (re-exported: the store's vocabulary)
    AXES,
    ROLES,
    RUNNABLE_STATUSES,
    SCOPES,
    SWEEP_STATUSES,
    SWEEP_TERMINAL,
    TRIAL_ENDED,
    TRIAL_STATUSES,
)

#: Trial statuses that end an attempt (``finished_at`` is set): ``vocab.TRIAL_ENDED``.
TRIAL_TERMINAL = TRIAL_ENDED


@dataclass(frozen=True)
class NewTrial:
    """A trial to insert; the store fills in status, attempt and timestamps.

    Attributes:
        trial_hash: Identity of the trial within its sweep (config and seed), e.g.
            ``TrialConfig.config_hash()``; inserting the same hash twice is a no-op in
            ``add_trials`` and an error in ``create_sweep``.
        cell_key: Identity of the grid cell: every axis except the seed, so seeds of one
            cell can be grouped in SQL.
        config: The full ``TrialConfig.to_dict()``.
        params: The resolved hyperparameters.
        role: ``grid``, ``tuning``, ``final`` or ``imported``.
        number: An external ordinal, e.g. the Optuna trial number.
    """

    trial_hash: str
    cell_key: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    seed: int
    config: dict[str, Any]
    params: dict[str, Any]
    role: str = "grid"
    number: int | None = None


@dataclass(frozen=True)
class SweepInfo:
    """One sweep and how many of its trials are in each status (every status is a key)."""

    id: int
    name: str
    spec: dict[str, Any]
    spec_hash: str
    status: str
    n_trials: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    description: str | None = None
    notes: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    #: Service fields (``bench serve``): the submitter and the Ray Job running the sweep.
    submitter: str | None = None
    job_id: str | None = None
    job_state: str | None = None
    job_message: str | None = None
    job_submitted_at: datetime | None = None
    job_started_at: datetime | None = None
    job_finished_at: datetime | None = None


@dataclass(frozen=True)
class TrialInfo:
    """One trial row. Timestamps are aware UTC datetimes; JSON columns are plain dicts."""

    id: int
    sweep_id: int
    trial_hash: str
    cell_key: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    seed: int
    role: str
    number: int | None
    config: dict[str, Any]
    params: dict[str, Any]
    status: str
    attempt: int
    host: str | None
    device: str | None
    versions: dict[str, Any] | None
    error: str | None
    diverged_step: int | None
    steps: int | None
    epochs: int | None
    wall_time: float | None
    examples_per_sec: float | None
    step_time_mean: float | None
    step_time_p90: float | None
    optimizer_state_bytes: int | None
    peak_memory_bytes: int | None
    time_to_target: float | None
    step_to_target: int | None
    final: dict[str, float] | None
    best: dict[str, float] | None
    final_val_loss: float | None
    final_val_accuracy: float | None
    final_train_loss: float | None
    best_val_loss: float | None
    best_val_accuracy: float | None
    objective: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
