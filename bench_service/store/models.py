"""SQLAlchemy models of the results schema (the source of truth for Alembic migrations).

Every table is prefixed ``bench_`` and our Alembic version table is ``bench_alembic_version``
because Optuna's RDB storage shares the database and owns ``studies``, ``trials``,
``alembic_version`` and friends.

Layout (after Optuna's ``trials``/``trial_values`` and MLflow's ``metrics``):

* ``bench_sweeps``: one row per sweep, its spec and status.
* ``bench_trials``: one row per trial; the four axes are indexed columns so results can be
  filtered in SQL, hyperparameters and the full config are JSON, and final/best metric values
  are kept both faithfully (JSON) and as finite scalar columns for sorting.
* ``bench_metrics``: metric points in long format, indexed ``(trial_id, name, scope, step)``
  for curve queries. SQLite turns NaN into NULL, so non-finite values are stored as
  ``value = NULL`` plus ``special`` in ``('nan', 'inf', '-inf')``.

The store itself talks to these tables through SQLAlchemy Core (bulk inserts, no identity
map); the ORM classes are here for typing, migrations and ad-hoc use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench_service.store._types import JSONValue, UTCDateTime, utcnow
from bench_service.store.entities import ROLES, SCOPES, SWEEP_STATUSES, TRIAL_STATUSES

#: Prefix of every table we own (Optuna's tables live in the same database).
TABLE_PREFIX = "bench_"
#: Alembic's version table for our migrations (Optuna's is ``alembic_version``).
VERSION_TABLE = "bench_alembic_version"

#: Deterministic constraint names, so migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``column IN ('a', 'b')`` for a check constraint over fixed literals."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base holding the ``bench_`` metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sweep(Base):
    """A named grid (or tuning run) of trials."""

    __tablename__ = "bench_sweeps"
    __table_args__ = (CheckConstraint(_in("status", SWEEP_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    n_trials: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    description: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Who submitted the sweep to the service (``bench serve``); NULL for ``bench run``.
    submitter: Mapped[str | None] = mapped_column(String(200))
    #: The Ray Job running the sweep (its submission id) and that job's state
    #: (``vocab.JOB_STATES``), as the service last saw it; NULL for ``bench run``.
    job_id: Mapped[str | None] = mapped_column(String(200))
    job_state: Mapped[str | None] = mapped_column(String(16))
    job_message: Mapped[str | None] = mapped_column(Text)
    job_submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    job_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    job_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Trial(Base):
    """One training run of one sweep: its axes, config, status and result summary."""

    __tablename__ = "bench_trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "trial_hash"),
        Index("ix_bench_trials_sweep_cell", "sweep_id", "cell_key"),
        Index(
            "ix_bench_trials_sweep_axes",
            "sweep_id",
            "workload",
            "optimizer",
            "scheduler",
            "regularizer",
        ),
        Index("ix_bench_trials_sweep_status", "sweep_id", "status"),
        CheckConstraint(_in("status", TRIAL_STATUSES), name="status"),
        CheckConstraint(_in("role", ROLES), name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("bench_sweeps.id", ondelete="CASCADE"), index=True
    )
    trial_hash: Mapped[str] = mapped_column(String(64))
    cell_key: Mapped[str] = mapped_column(String(64))
    workload: Mapped[str] = mapped_column(String(100))
    optimizer: Mapped[str] = mapped_column(String(100))
    scheduler: Mapped[str] = mapped_column(String(100))
    regularizer: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16), default="grid", server_default="grid")
    number: Mapped[int | None] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    params: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    error: Mapped[str | None] = mapped_column(Text)
    #: How the trial ran: ``packed (K members)``, or ``unpacked: <reason>`` in a sweep that
    #: packs (``execution: {pack: ...}``); ``NULL`` for an ordinary one-at-a-time trial.
    execution: Mapped[str | None] = mapped_column(String(255))
    diverged_step: Mapped[int | None] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer)
    epochs: Mapped[int | None] = mapped_column(Integer)
    wall_time: Mapped[float | None] = mapped_column(Float)
    examples_per_sec: Mapped[float | None] = mapped_column(Float)
    #: The cost of a step (revision 0005): ``optimizer.step()`` mean and p90 seconds, the
    #: optimizer's state bytes, peak memory bytes (CUDA peak, or params+grads+state on CPU).
    step_time_mean: Mapped[float | None] = mapped_column(Float)
    step_time_p90: Mapped[float | None] = mapped_column(Float)
    optimizer_state_bytes: Mapped[int | None] = mapped_column(BigInteger)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    time_to_target: Mapped[float | None] = mapped_column(Float)
    step_to_target: Mapped[int | None] = mapped_column(Integer)
    final: Mapped[dict[str, float] | None] = mapped_column(JSONValue)
    best: Mapped[dict[str, float] | None] = mapped_column(JSONValue)
    final_val_loss: Mapped[float | None] = mapped_column(Float)
    final_val_accuracy: Mapped[float | None] = mapped_column(Float)
    final_train_loss: Mapped[float | None] = mapped_column(Float)
    best_val_loss: Mapped[float | None] = mapped_column(Float)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    #: The tuning objective's value for this trial (tuned sweeps; NULL when not finite).
    objective: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Cell(Base):
    """One grid cell of a tuned sweep: its Optuna study, best config, cost and importances.

    Written by the tuner when a cell's budget is spent, so that the leaderboard and the
    dashboard's tuning page need no Optuna import (the study itself lives in Optuna's own
    tables of the same database, under ``study_name``).
    """

    __tablename__ = "bench_cells"
    __table_args__ = (UniqueConstraint("sweep_id", "cell_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("bench_sweeps.id", ondelete="CASCADE"), index=True
    )
    cell_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(400))
    workload: Mapped[str] = mapped_column(String(100))
    optimizer: Mapped[str] = mapped_column(String(100))
    scheduler: Mapped[str] = mapped_column(String(100))
    regularizer: Mapped[str] = mapped_column(String(100))
    study_name: Mapped[str] = mapped_column(String(500))
    objective_metric: Mapped[str] = mapped_column(String(64))
    objective_mode: Mapped[str] = mapped_column(String(8))
    n_tuning: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_pruned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    n_diverged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_value: Mapped[float | None] = mapped_column(Float)
    best_params: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    importance: Mapped[dict[str, float] | None] = mapped_column(JSONValue)
    tuning_cpu_seconds: Mapped[float | None] = mapped_column(Float)
    tuning_gpu_seconds: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Metric(Base):
    """One metric point of one trial (long format)."""

    __tablename__ = "bench_metrics"
    __table_args__ = (
        Index("ix_bench_metrics_curve", "trial_id", "name", "scope", "step"),
        CheckConstraint(_in("scope", SCOPES), name="scope"),
        CheckConstraint("special IS NULL OR special IN ('nan', 'inf', '-inf')", name="special"),
    )

    # BIGINT on PostgreSQL (metric tables grow large); INTEGER on SQLite, where only an
    # ``INTEGER PRIMARY KEY`` is the autoincrementing rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    trial_id: Mapped[int] = mapped_column(ForeignKey("bench_trials.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    special: Mapped[str | None] = mapped_column(String(4))


class SweepLease(Base):
    """Which driver runs a sweep now: one row per sweep name while a driver holds it.

    Keyed by the sweep's *name* (no foreign key), so a driver takes the lease before the
    sweep exists and two drivers racing to create it are told apart. ``expires_at`` is
    pushed forward by the owner's heartbeat; a row past it belongs to a dead driver and the
    next one takes it over (``bench_service.store.lease``).
    """

    __tablename__ = "bench_sweep_leases"

    sweep_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
