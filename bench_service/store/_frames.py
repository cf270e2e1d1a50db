"""Queries behind ``Store.trials_frame`` and ``Store.curves_frame`` (pandas is imported lazily).

Filters become bound parameters (``col = :v`` or ``col IN (...)``), never SQL text, so user
input from the CLI or the HTTP API cannot change a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Select, Table, select, true
from sqlalchemy.engine import Connection

from bench_service.store._types import SPECIAL_VALUES
from bench_service.store.models import Metric, Sweep, Trial
from bench_service.vocab import AXES

if TYPE_CHECKING:
    import pandas as pd

#: A filter on a text column: one value or a list of values (``None``: no filter).
Filter = str | Sequence[str] | None
#: A filter on an integer column.
IntFilter = int | Sequence[int] | None

SWEEPS = cast(Table, Sweep.__table__)
TRIALS = cast(Table, Trial.__table__)
METRICS = cast(Table, Metric.__table__)

TRIALS_FRAME_COLUMNS: tuple[str, ...] = (
    "trial_id",
    "sweep",
    "trial_hash",
    "cell_key",
    "workload",
    "optimizer",
    "scheduler",
    "regularizer",
    "seed",
    "role",
    "number",
    "status",
    "attempt",
    "host",
    "device",
    "steps",
    "epochs",
    "wall_time",
    "examples_per_sec",
    "step_time_mean",
    "step_time_p90",
    "optimizer_state_bytes",
    "peak_memory_bytes",
    "diverged_step",
    "step_to_target",
    "time_to_target",
    "final_val_loss",
    "final_val_accuracy",
    "final_train_loss",
    "best_val_loss",
    "best_val_accuracy",
    "objective",
    "params",
    "final",
    "best",
    "error",
    "execution",
    "started_at",
    "finished_at",
)
CURVES_FRAME_COLUMNS: tuple[str, ...] = (
    "trial_id",
    "workload",
    "optimizer",
    "scheduler",
    "regularizer",
    "seed",
    "status",
    "name",
    "scope",
    "step",
    "epoch",
    "wall_time",
    "value",
)
_NULLABLE_INTS = (
    "seed", "number", "attempt", "steps", "epochs", "diverged_step", "step_to_target",
    "optimizer_state_bytes", "peak_memory_bytes",
)
_FLOATS = (
    "wall_time",
    "examples_per_sec",
    "step_time_mean",
    "step_time_p90",
    "time_to_target",
    "final_val_loss",
    "final_val_accuracy",
    "final_train_loss",
    "best_val_loss",
    "best_val_accuracy",
    "objective",
)
_TIMESTAMPS = ("started_at", "finished_at")
#: Text columns get pandas' string dtype even when every value is missing (stable dtypes).
_TRIAL_TEXT = (
    "sweep",
    "trial_hash",
    "cell_key",
    *AXES,
    "role",
    "status",
    "host",
    "device",
    "error",
    "execution",
)
_CURVE_TEXT = (*AXES, "status", "name", "scope")


@dataclass(frozen=True)
class AxisFilters:
    """Filters on trial columns shared by both frames."""

    workload: Filter = None
    optimizer: Filter = None
    scheduler: Filter = None
    regularizer: Filter = None
    status: Filter = None
    role: Filter = None
    seed: IntFilter = None

    def where(self) -> list[ColumnElement[bool]]:
        """SQL conditions on ``bench_trials`` for every filter that is set."""
        conditions = []
        for name in (*AXES, "status", "role", "seed"):
            condition = match(TRIALS.c[name], getattr(self, name))
            if condition is not None:
                conditions.append(condition)
        return conditions


def match(column: Any, value: Any) -> ColumnElement[bool] | None:
    """``column = value`` for a scalar, ``column IN (values)`` for a list, ``None`` for None."""
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return cast(ColumnElement[bool], column == value)
    return cast(ColumnElement[bool], column.in_(list(value)))


def trials_frame(conn: Connection, sweep_id: int | None, filters: AxisFilters) -> pd.DataFrame:
    """See ``Store.trials_frame``."""
    columns = [
        TRIALS.c.id.label("trial_id"),
        SWEEPS.c.name.label("sweep"),
        *(TRIALS.c[name] for name in TRIALS_FRAME_COLUMNS[2:]),
    ]
    stmt: Select[Any] = (
        select(*columns)
        .join_from(TRIALS, SWEEPS, TRIALS.c.sweep_id == SWEEPS.c.id)
        .where(*filters.where())
        .order_by(TRIALS.c.id)
    )
    if sweep_id is not None:
        stmt = stmt.where(TRIALS.c.sweep_id == sweep_id)
    return typed_trials(_frame(conn.execute(stmt).all(), TRIALS_FRAME_COLUMNS))


def typed_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials frame's dtypes on a frame of its columns (also the HTTP client's)."""
    import pandas as pd

    frame["trial_id"] = frame["trial_id"].astype("int64")
    for name in _TRIAL_TEXT:
        frame[name] = frame[name].astype("str")
    for name in _NULLABLE_INTS:
        frame[name] = frame[name].astype("Int64")
    for name in _FLOATS:
        frame[name] = frame[name].astype("float64")
    for name in _TIMESTAMPS:
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.as_unit("us")
    return frame


def curves_frame(
    conn: Connection,
    sweep_id: int | None,
    filters: AxisFilters,
    *,
    trial_ids: list[int] | None,
    names: Filter,
    scope: Filter,
) -> pd.DataFrame:
    """See ``Store.curves_frame``."""

    m, t = METRICS.c, TRIALS.c
    stmt: Select[Any] = (
        select(
            m.trial_id,
            t.workload,
            t.optimizer,
            t.scheduler,
            t.regularizer,
            t.seed,
            t.status,
            m.name,
            m.scope,
            m.step,
            m.epoch,
            m.wall_time,
            m.value,
            m.special,
        )
        .join_from(METRICS, TRIALS, m.trial_id == t.id)
        .where(*filters.where())
        .order_by(m.trial_id, m.name, m.scope, m.step, m.id)
    )
    if sweep_id is not None:
        stmt = stmt.where(t.sweep_id == sweep_id)
    if trial_ids is not None:
        stmt = stmt.where(m.trial_id.in_(trial_ids) if trial_ids else ~true())
    for column, value in ((m.name, names), (m.scope, scope)):
        condition = match(column, value)
        if condition is not None:
            stmt = stmt.where(condition)
    return typed_curves(_frame(conn.execute(stmt).all(), (*CURVES_FRAME_COLUMNS, "special")))


def typed_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The curves frame's dtypes, NaN/inf restored from ``special`` (which is dropped), on a
    frame of its columns plus ``special`` (also the HTTP client's)."""
    for name in ("trial_id", "seed", "step", "epoch"):
        frame[name] = frame[name].astype("int64")
    for name in _CURVE_TEXT:
        frame[name] = frame[name].astype("str")
    frame["wall_time"] = frame["wall_time"].astype("float64")
    frame["value"] = frame["value"].astype("float64")
    special = frame["special"].notna()
    if special.any():
        frame.loc[special, "value"] = frame.loc[special, "special"].map(SPECIAL_VALUES)
    return frame.drop(columns="special")


def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    """A frame built column by column (pandas inspects SQLAlchemy ``Row`` objects slowly)."""
    import pandas as pd

    data = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pd.DataFrame(
        {name: pd.Series(list(values)) for name, values in zip(columns, data, strict=True)}
    )
