"""Response bodies of the HTTP API (what ``/openapi.json`` documents).

Non-finite floats inside JSON objects and curves are sent as the strings ``"nan"``,
``"inf"`` and ``"-inf"`` (JSON has no such numbers), the spelling the database uses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Number = float | str | None


class Health(BaseModel):
    status: str
    version: str
    database: str
    ray: str
    ray_embedded: bool


class SweepOut(BaseModel):
    name: str
    status: str
    state: str | None
    submitter: str | None
    job_id: str | None
    job_message: str | None
    n_trials: int
    done: int
    counts: dict[str, int]
    description: str | None
    spec_hash: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    job_submitted_at: str | None
    job_started_at: str | None
    job_finished_at: str | None
    spec: dict[str, Any] | None = None


class SweepPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[SweepOut]


class Submitted(BaseModel):
    name: str
    job_id: str | None
    state: str | None
    resumed: bool
    n_trials: int


class TrialOut(BaseModel):
    id: int
    sweep: str
    trial_hash: str
    cell_key: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    seed: int
    role: str
    number: int | None
    status: str
    attempt: int
    host: str | None
    device: str | None
    steps: int | None
    epochs: int | None
    wall_time: float | None
    examples_per_sec: float | None
    step_time_mean: float | None
    step_time_p90: float | None
    optimizer_state_bytes: int | None
    peak_memory_bytes: int | None
    diverged_step: int | None
    step_to_target: int | None
    time_to_target: float | None
    final_val_loss: float | None
    final_val_accuracy: float | None
    final_train_loss: float | None
    best_val_loss: float | None
    best_val_accuracy: float | None
    objective: float | None
    params: dict[str, Any] | None
    final: dict[str, Any] | None
    best: dict[str, Any] | None
    error: str | None
    execution: str | None
    started_at: str | None
    finished_at: str | None


class TrialPage(BaseModel):
    total: int
    offset: int
    limit: int
    sort: str
    items: list[TrialOut]


class Series(BaseModel):
    name: str
    scope: str
    points: int
    step: list[int]
    epoch: list[int]
    wall_time: list[float]
    value: list[Number]


class Metrics(BaseModel):
    trial_id: int
    max_points: int
    series: list[Series]


class Curves(BaseModel):
    """Long-format points (``bench results --curves``), column by column, one page."""

    total: int
    offset: int
    limit: int
    columns: dict[str, list[Any]]


class Table(BaseModel):
    """A table (``bench results --best``): column names and rows of values."""

    columns: list[str]
    rows: list[list[Any]]


class RegistryEntry(BaseModel):
    name: str
    description: str
    params: dict[str, Any]


class Logs(BaseModel):
    name: str
    job_id: str | None
    text: str


class CancelOut(BaseModel):
    name: str
    job_id: str | None
    state: str | None
    cancelled_trials: int
