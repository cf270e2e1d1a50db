"""Queries of the HTTP service (``bench serve``): job bookkeeping, trial pages, curves.

Every query here is one statement with bound parameters; filters and the sort column come
from closed lists (never SQL text from a request). Pages and downsampled curves are cut in
the database, so a request costs the size of its answer, not of the sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.engine import Connection

from bench_service.store._types import SPECIAL_VALUES, utcnow
from bench_service.store.errors import StoreError
from bench_service.store.models import Sweep, Trial
from bench_service.store.store import Store
from bench_service.vocab import AXES, JOB_STATES, JOB_TERMINAL, ROLES, TRIAL_STATUSES

SWEEPS = cast(Table, Sweep.__table__)
TRIALS = cast(Table, Trial.__table__)

#: Columns a trial page may be sorted by (``-name`` sorts descending).
SORTABLE: tuple[str, ...] = (
    "id", *AXES, "seed", "status", "role", "number", "wall_time", "steps", "epochs",
    "final_val_loss", "best_val_loss", "final_val_accuracy", "best_val_accuracy",
    "final_train_loss", "objective", "diverged_step", "started_at", "finished_at",
    "step_time_mean", "step_time_p90", "optimizer_state_bytes", "peak_memory_bytes",
)
#: Columns of one trial in a page (``params``/``final``/``best`` as JSON objects).
PAGE_COLUMNS: tuple[str, ...] = (
    "id", "trial_hash", "cell_key", *AXES, "seed", "role", "number", "status", "attempt",
    "host", "device", "steps", "epochs", "wall_time", "examples_per_sec", "step_time_mean",
    "step_time_p90", "optimizer_state_bytes", "peak_memory_bytes", "diverged_step",
    "step_to_target",
    "time_to_target", "final_val_loss", "final_val_accuracy", "final_train_loss",
    "best_val_loss", "best_val_accuracy", "objective", "params", "final", "best", "error",
    "execution", "started_at", "finished_at",
)
#: Job fields ``set_job`` writes.
JOB_FIELDS: frozenset[str] = frozenset({
    "submitter", "job_id", "job_state", "job_message", "job_submitted_at", "job_started_at",
    "job_finished_at",
})


def set_job(store: Store, name: str, **values: Any) -> None:
    """Update the service fields of sweep ``name`` (``JOB_FIELDS``); a terminal
    ``job_state`` stamps ``job_finished_at``, ``running`` stamps ``job_started_at`` once.

    Raises:
        StoreError: An unknown field or job state, or no such sweep.
    """
    unknown = set(values) - JOB_FIELDS
    if unknown:
        raise StoreError(f"unknown job fields {sorted(unknown)}; valid: {sorted(JOB_FIELDS)}")
    state = values.get("job_state")
    if state is not None and state not in JOB_STATES:
        raise StoreError(f"invalid job state {state!r}; valid: {', '.join(JOB_STATES)}")

    def tx(conn: Connection) -> None:
        row = conn.execute(select(SWEEPS.c.id, SWEEPS.c.job_started_at)
                           .where(SWEEPS.c.name == name)).first()
        if row is None:
            raise StoreError(f"unknown sweep {name!r}")
        now = utcnow()
        out = dict(values)
        if state == "running" and row.job_started_at is None:
            out.setdefault("job_started_at", now)
        if state in JOB_TERMINAL:
            out.setdefault("job_finished_at", now)
        if state == "queued":
            out.setdefault("job_started_at", None)
            out.setdefault("job_finished_at", None)
        conn.execute(update(SWEEPS).where(SWEEPS.c.id == row.id).values(out))

    store._write(tx)


def active_jobs(store: Store) -> list[tuple[str, str]]:
    """``(sweep name, job id)`` of every sweep whose job the service last saw unfinished."""
    live = [s for s in JOB_STATES if s not in JOB_TERMINAL]
    with store._reading() as conn:
        rows = conn.execute(select(SWEEPS.c.name, SWEEPS.c.job_id).where(
            SWEEPS.c.job_state.in_(live), SWEEPS.c.job_id.is_not(None)).order_by(SWEEPS.c.id))
        return [(str(r.name), str(r.job_id)) for r in rows]


def sweep_page(store: Store, *, offset: int, limit: int) -> tuple[int, list[str]]:
    """``(total, names)`` of one page of sweeps, oldest first."""
    with store._reading() as conn:
        total = int(conn.scalar(select(func.count()).select_from(SWEEPS)) or 0)
        names = list(conn.scalars(select(SWEEPS.c.name).order_by(SWEEPS.c.id)
                                  .offset(offset).limit(limit)))
    return total, [str(n) for n in names]


def trial_page(
    store: Store,
    sweep_id: int,
    filters: Mapping[str, Sequence[Any]],
    *,
    sort: str = "id",
    offset: int = 0,
    limit: int = 100,
) -> tuple[int, list[dict[str, Any]]]:
    """``(total matching, rows)`` of one page of a sweep's trials, filtered and sorted in SQL.

    ``filters`` maps an axis, ``status``, ``role`` or ``seed`` to the accepted values; ``sort``
    is a ``SORTABLE`` column, ``-`` first for descending (NULLs last either way, ties by id).

    Raises:
        StoreError: An unknown filter, status, role or sort column.
    """
    column = sort.removeprefix("-")
    if column not in SORTABLE:
        raise StoreError(f"cannot sort by {column[:80]!r}; valid: {', '.join(SORTABLE)}")
    where = [TRIALS.c.sweep_id == sweep_id]
    for key, values in filters.items():
        if key not in (*AXES, "status", "role", "seed"):
            raise StoreError(f"cannot filter by {key[:80]!r}")
        valid = {"status": TRIAL_STATUSES, "role": ROLES}.get(key)
        bad = [v for v in values if valid is not None and v not in valid]
        if bad:
            raise StoreError(f"invalid {key} {str(bad[0])[:80]!r} in filter; valid: "
                             f"{', '.join(valid or ())}")
        if values:
            where.append(TRIALS.c[key].in_(list(values)))
    col = TRIALS.c[column]
    order = [(col.desc() if sort.startswith("-") else col.asc()).nulls_last(), TRIALS.c.id]
    with store._reading() as conn:
        total = int(conn.scalar(select(func.count()).select_from(TRIALS).where(*where)) or 0)
        rows = conn.execute(select(*(TRIALS.c[c] for c in PAGE_COLUMNS)).where(*where)
                            .order_by(*order).offset(offset).limit(limit)).mappings().all()
    return total, [dict(r) for r in rows]


def trial_row(store: Store, trial_id: int) -> dict[str, Any] | None:
    """One trial's ``PAGE_COLUMNS`` plus its sweep's name (``sweep``), or ``None``."""
    with store._reading() as conn:
        row = conn.execute(
            select(*(TRIALS.c[c] for c in PAGE_COLUMNS), SWEEPS.c.name.label("sweep"))
            .join_from(TRIALS, SWEEPS, TRIALS.c.sweep_id == SWEEPS.c.id)
            .where(TRIALS.c.id == trial_id)).mappings().first()
    return dict(row) if row is not None else None


#: One curve, downsampled in SQL: every ``stride``-th point of each (name, scope) series
#: plus its last point, the stride chosen so that at most ``:mp`` points come back. Window
#: functions (SQLite >= 3.25, PostgreSQL) number the points; integer division rounds the
#: stride up: ceil((n - 1) / (mp - 1)).
_CURVE_SQL = """
SELECT name, scope, step, epoch, wall_time, value, special, n FROM (
  SELECT name, scope, step, epoch, wall_time, value, special,
         row_number() OVER (PARTITION BY name, scope ORDER BY step, id) - 1 AS rn,
         count(*) OVER (PARTITION BY name, scope) AS n
  FROM bench_metrics
  WHERE trial_id = :trial {names} {scope}
) q
WHERE n <= :mp OR rn = n - 1 OR rn % ((n - 1 + :mp - 2) / (:mp - 1)) = 0
ORDER BY name, scope, step
"""


def downsampled_curve(
    store: Store,
    trial_id: int,
    *,
    names: Sequence[str] = (),
    scope: str | None = None,
    max_points: int = 200,
) -> list[dict[str, Any]]:
    """The metric points of one trial, at most ``max_points`` per (name, scope) series, evenly
    spaced by position and always with the first and last point; chosen in the database.

    Each row: ``name``, ``scope``, ``step``, ``epoch``, ``wall_time``, ``value`` (NaN and
    infinities restored as floats) and ``points`` (the series' full length).
    """
    if max_points < 2:
        raise StoreError("max_points must be at least 2")
    params: dict[str, Any] = {"trial": trial_id, "mp": max_points}
    name_sql = ""
    if names:
        keys = [f"n{i}" for i in range(len(names))]
        name_sql = f"AND name IN ({', '.join(':' + k for k in keys)})"
        params.update(zip(keys, names, strict=True))
    scope_sql = ""
    if scope is not None:
        scope_sql = "AND scope = :scope"
        params["scope"] = scope
    sql = text(_CURVE_SQL.format(names=name_sql, scope=scope_sql))
    with store._reading() as conn:
        rows = conn.execute(sql, params).mappings().all()
    out = []
    for r in rows:
        value = r["value"]
        if r["special"] is not None:
            value = SPECIAL_VALUES[r["special"]]
        out.append({"name": r["name"], "scope": r["scope"], "step": int(r["step"]),
                    "epoch": int(r["epoch"]), "wall_time": float(r["wall_time"]),
                    "value": None if value is None else float(value), "points": int(r["n"])})
    return out


def stamp(at: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 text (``None`` stays ``None``)."""
    return at.isoformat() if at is not None else None


__all__ = [
    "JOB_FIELDS", "PAGE_COLUMNS", "SORTABLE", "active_jobs", "downsampled_curve", "set_job",
    "stamp", "sweep_page", "trial_page", "trial_row",
]
