"""Read-only queries behind the Streamlit dashboard (``bench_service/dashboard``).

The dashboard must stay fast on big sweeps (1,000 trials × 200 points per metric), so the
heavy lifting happens in the database, not in pandas:

* **Downsampling on the database side.** A curve's x values (step, epoch or wall-clock time)
  are cut into at most ``max_points`` buckets of equal width (``floor(x / width)``, computed
  in SQL); each run contributes the mean of its points in a bucket. Only the buckets travel.
* **Aggregation across runs in SQL.** ``curve_bands`` groups the bucketed runs by the chosen
  axes and returns mean, min, max and the sums needed for a standard deviation, so a plot
  of 1,000 runs moves a few thousand rows instead of 200,000.
* **Cheap change detection.** ``sweep_fingerprint`` summarises a sweep's progress in one
  indexed query; the dashboard keys its caches on it, so a finished sweep is read once and a
  running one is re-read as soon as something changed.

Every function takes a ``Store`` (or an ``Engine``) and returns a pandas ``DataFrame`` (or a
plain value). All user input (sweep ids, metric names, axis values) reaches SQL as bound
parameters; identifiers such as grouping columns are picked from the table objects through a
fixed allow-list, never spliced into SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    Float,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    inspect,
    null,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from bench_service.store._frames import METRICS, SWEEPS, TRIALS, AxisFilters
from bench_service.vocab import AXES, SCOPES, TRIAL_ENDED, TRIAL_STATUSES

if TYPE_CHECKING:
    import pandas as pd

    from bench_service.store.store import Store

__all__ = [
    "AXES",
    "GROUPABLE",
    "MAX_ID",
    "X_AXES",
    "AxisFilters",
    "bucket_width",
    "cell_importance",
    "curve_bands",
    "divergence_points",
    "metric_catalog",
    "run_curves",
    "schema_ready",
    "schema_revision",
    "sweep_fingerprint",
    "sweeps_frame",
    "trial_detail",
    "trial_points",
    "trial_summaries",
    "tuned_cells",
]

#: Trial columns a curve may be grouped by (the allow-list for identifiers).
GROUPABLE: tuple[str, ...] = (*AXES, "seed", "role", "status")
#: Metric columns a curve may be drawn against.
X_AXES: tuple[str, ...] = ("step", "epoch", "wall_time")

_X_INTEGER = {"step": True, "epoch": True, "wall_time": False}


class _FloorDiv(FunctionElement[Any]):
    """``floor(x / width)`` for non-negative ``x``, portable across SQLite and PostgreSQL.

    PostgreSQL has ``FLOOR``; SQLite has it only when built with its math functions, and
    ``CAST(... AS INTEGER)`` truncates there (the same as floor for x ≥ 0) while on PostgreSQL
    it rounds; hence one construct compiled per dialect.
    """

    name = "bench_floor_div"
    inherit_cache = True
    type = Integer()


@compiles(_FloorDiv)
def _floor_div_default(element: _FloorDiv, compiler: SQLCompiler, **kw: Any) -> str:
    x, width = list(element.clauses)
    return f"FLOOR({compiler.process(x, **kw)} / {compiler.process(width, **kw)})"


@compiles(_FloorDiv, "sqlite")
def _floor_div_sqlite(element: _FloorDiv, compiler: SQLCompiler, **kw: Any) -> str:
    x, width = list(element.clauses)
    return f"CAST({compiler.process(x, **kw)} / {compiler.process(width, **kw)} AS INTEGER)"


def _engine(source: Store | Engine) -> Engine:
    return source if isinstance(source, Engine) else source.engine


def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    """A frame built column by column (faster than letting pandas inspect ``Row`` objects)."""
    import pandas as pd

    data = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pd.DataFrame(
        {name: pd.Series(list(values), dtype=object) for name, values in zip(
            columns, data, strict=True)}
    )


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    for name in columns:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


# --------------------------------------------------------------------------- sweeps


def schema_ready(source: Store | Engine) -> bool:
    """Whether the database holds our tables (a fresh file does not: nothing was run yet)."""
    with _engine(source).connect() as conn:
        return bool(inspect(conn).has_table(SWEEPS.name))


def sweeps_frame(source: Store | Engine) -> pd.DataFrame:
    """One row per sweep with its trial counts per status and its timestamps (one query).

    Columns: ``sweep_id, name, description, status, n_trials, created_at, started_at,
    finished_at, last_activity`` and one count column per trial status. Timestamps are aware
    UTC datetimes (or ``NaT``).
    """
    import pandas as pd

    t = TRIALS.c
    counts = (
        select(
            t.sweep_id,
            *(
                func.coalesce(func.sum(case((t.status == status, 1), else_=0)), 0).label(status)
                for status in TRIAL_STATUSES
            ),
            func.max(t.heartbeat_at).label("last_activity"),
        )
        .group_by(t.sweep_id)
        .subquery()
    )
    s = SWEEPS.c
    stmt = (
        select(
            s.id, s.name, s.description, s.status, s.n_trials, s.created_at, s.started_at,
            s.finished_at, counts.c.last_activity,
            *(func.coalesce(counts.c[status], 0) for status in TRIAL_STATUSES),
        )
        .outerjoin_from(SWEEPS, counts, counts.c.sweep_id == s.id)
        .order_by(s.id)
    )
    columns = (
        "sweep_id", "name", "description", "status", "n_trials", "created_at", "started_at",
        "finished_at", "last_activity", *TRIAL_STATUSES,
    )
    with _engine(source).connect() as conn:
        frame = _frame(conn.execute(stmt).all(), columns)
    for name in ("sweep_id", "n_trials", *TRIAL_STATUSES):
        frame[name] = frame[name].astype("int64")
    for name in ("created_at", "started_at", "finished_at", "last_activity"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def sweep_fingerprint(source: Store | Engine, sweep_id: int) -> str:
    """A short string that changes whenever the sweep's stored results may have changed.

    Counts per status plus the newest heartbeat (refreshed by every metric batch): cache keys
    built on it make a finished sweep cost one query per page and a running one fresh data.
    """
    t = TRIALS.c
    stmt = (
        select(t.status, func.count(), func.max(t.heartbeat_at), func.max(t.attempt))
        .where(t.sweep_id == sweep_id)
        .group_by(t.status)
        .order_by(t.status)
    )
    s = SWEEPS.c
    with _engine(source).connect() as conn:
        rows = conn.execute(stmt).all()
        sweep = conn.execute(
            select(s.status, s.n_trials).where(s.id == sweep_id)
        ).first()
    parts = [f"{sweep[0]}:{sweep[1]}" if sweep is not None else "missing"]
    parts += [f"{status}={n}@{last}#{attempt}" for status, n, last, attempt in rows]
    return "|".join(parts)


# --------------------------------------------------------------------------- trials


_SUMMARY_COLUMNS: tuple[str, ...] = (
    "trial_id", "cell_key", *AXES, "seed", "role", "number", "status", "attempt", "host",
    "device", "error", "diverged_step", "steps", "epochs", "wall_time", "examples_per_sec",
    "time_to_target", "step_to_target", "final", "best", "params", "started_at", "finished_at",
    "objective",
)
#: The cost of a step (revision 0005); NULL for a database the dashboard opens unmigrated.
_COST_COLUMNS: tuple[str, ...] = (
    "step_time_mean", "step_time_p90", "optimizer_state_bytes", "peak_memory_bytes",
)


def trial_summaries(
    source: Store | Engine, sweep_id: int, *, role: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per trial: axes, seed, role, status, timings and the ``final``/``best``/``params``
    dicts (the faithful JSON, so any metric a workload records can be ranked, not just the
    scalar columns), and the tuner's ``objective`` (NaN where none). Columns:
    ``_SUMMARY_COLUMNS``.
    """
    import pandas as pd

    t = TRIALS.c
    with _engine(source).connect() as conn:
        # ``objective`` (the tuner's value of a trial) came with the tuning revision; a
        # database the dashboard opens without migrating may predate it.
        has_objective = "objective" in (_existing_columns(conn, TRIALS.name) or set())
        objective = t.objective if has_objective else null().cast(Float)
        existing = _existing_columns(conn, TRIALS.name) or set()
        cost = [t[c] if c in existing else null().cast(Float) for c in _COST_COLUMNS]
        columns = [t.id, *(t[name] for name in _SUMMARY_COLUMNS[1:-1]), objective, *cost]
        stmt = select(*columns).where(t.sweep_id == sweep_id).order_by(t.id)
        if role is not None:
            stmt = stmt.where(t.role.in_(list(role)))
        frame = _frame(conn.execute(stmt).all(), (*_SUMMARY_COLUMNS, *_COST_COLUMNS))
    frame["trial_id"] = frame["trial_id"].astype("int64")
    for name in ("seed", "number", "attempt", "diverged_step", "steps", "epochs",
                 "step_to_target"):
        frame[name] = pd.array(
            [None if v is None else int(v) for v in frame[name]], dtype="Int64"
        )
    _numeric(frame, ("wall_time", "examples_per_sec", "time_to_target", "objective",
                     *_COST_COLUMNS))
    for name in ("final", "best", "params"):
        frame[name] = [v if isinstance(v, dict) else {} for v in frame[name]]
    for name in ("started_at", "finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def metric_catalog(source: Store | Engine, sweep_id: int) -> pd.DataFrame:
    """Which metrics a sweep stored and how long their curves are.

    Columns: ``name, scope, points_per_run, max_step, max_epoch, max_wall_time``; the ranges
    size the downsampling buckets without another scan of the curves.

    Scanning every point of a big sweep just to list its metric names would cost more than
    drawing them, so only a few representative trials are read, through the
    ``(trial_id, name, scope, step)`` index: per workload, scheduler and status the newest
    trial (which metrics a run records depends on its workload and on whether its schedule
    steps per iteration; a diverged run records fewer), per workload and scheduler the one
    with the most steps, and per workload the slowest (for the wall-clock range). A running
    sweep's ranges may therefore grow a little between refreshes; that only changes how
    finely the curves are bucketed.
    """
    t, m = TRIALS.c, METRICS.c
    in_sweep = and_(t.sweep_id == sweep_id, t.status != "pending")
    newest = select(func.max(t.id)).where(in_sweep).group_by(t.workload, t.scheduler, t.status)
    with _engine(source).connect() as conn:
        ids = set(conn.scalars(newest))
        for by, column in (((t.workload, t.scheduler), t.steps), ((t.workload,), t.wall_time)):
            top = (
                select(*by, func.max(column).label("top"))
                .where(in_sweep)
                .group_by(*by)
                .subquery()
            )
            ids |= set(
                conn.scalars(
                    select(func.max(t.id))
                    .join_from(
                        TRIALS,
                        top,
                        and_(*(c == top.c[c.name] for c in by), column == top.c.top),
                    )
                    .where(in_sweep)
                    .group_by(*by)
                )
            )
        ids.discard(None)
        per_run = (
            select(
                m.name, m.scope, func.count().label("n"), func.max(m.step).label("step"),
                func.max(m.epoch).label("epoch"), func.max(m.wall_time).label("wall"),
            )
            .where(m.trial_id.in_(sorted(ids)))
            .group_by(m.trial_id, m.name, m.scope)
            .subquery()
        )
        rows = (
            conn.execute(
                select(
                    per_run.c.name, per_run.c.scope, func.max(per_run.c.n),
                    func.max(per_run.c.step), func.max(per_run.c.epoch),
                    func.max(per_run.c.wall),
                )
                .group_by(per_run.c.name, per_run.c.scope)
                .order_by(per_run.c.name, per_run.c.scope)
            ).all()
            if ids
            else []
        )
    frame = _frame(
        rows, ("name", "scope", "points_per_run", "max_step", "max_epoch", "max_wall_time")
    )
    frame["name"] = frame["name"].astype("str")
    frame["scope"] = frame["scope"].astype("str")
    frame["points_per_run"] = frame["points_per_run"].astype("int64")
    return _numeric(frame, ("max_step", "max_epoch", "max_wall_time"))


def bucket_width(
    x: str, x_max: float | None, max_points: int, points_per_run: int | None = None
) -> float:
    """Width of the downsampling buckets so that a curve has at most ``max_points`` points.

    Integer axes (step, epoch) get an integer width ≥ 1; when a run has no more than
    ``max_points`` points anyway the width is 1, so every stored point is drawn as it is and
    runs that log at the same steps line up exactly. Wall-clock time is always bucketed:
    no two runs log at the same instant, so a mean across runs needs common time bins.
    """
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}; valid: {', '.join(X_AXES)}")
    max_points = max(1, int(max_points))
    if x_max is None or not math.isfinite(x_max) or x_max <= 0:
        return 1.0
    if _X_INTEGER[x]:
        if points_per_run is not None and points_per_run <= max_points:
            return 1.0
        return float(max(1, math.ceil((x_max + 1) / max_points)))
    return float(x_max) / max_points * (1 + 1e-9)


def _x_column(x: str) -> ColumnElement[Any]:
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}; valid: {', '.join(X_AXES)}")
    return cast(ColumnElement[Any], METRICS.c[x])


def _bucket(x: str, width: float) -> ColumnElement[Any]:
    column = _x_column(x)
    if _X_INTEGER[x]:
        w: ColumnElement[Any] = bindparam("bucket_width", int(width), type_=Integer())
    else:
        w = bindparam("bucket_width", float(width), type_=Float())
    return cast(ColumnElement[Any], _FloorDiv(column, w))


def _check_metric(name: str, scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")


def _group_columns(group_by: Sequence[str]) -> list[ColumnElement[Any]]:
    bad = [g for g in group_by if g not in GROUPABLE]
    if bad:
        raise ValueError(f"cannot group by {bad[0]!r}; valid: {', '.join(GROUPABLE)}")
    return [cast(ColumnElement[Any], TRIALS.c[g]) for g in dict.fromkeys(group_by)]


def _x_max(
    conn: Connection, sweep_id: int, name: str, scope: str, x: str, filters: AxisFilters
) -> float | None:
    t, m = TRIALS.c, METRICS.c
    value = conn.scalar(
        select(func.max(_x_column(x)))
        .join_from(METRICS, TRIALS, m.trial_id == t.id)
        .where(t.sweep_id == sweep_id, m.name == name, m.scope == scope, *filters.where())
    )
    return None if value is None else float(value)


def curve_bands(
    source: Store | Engine,
    sweep_id: int,
    *,
    name: str,
    scope: str,
    x: str = "step",
    group_by: Sequence[str] = ("optimizer",),
    filters: AxisFilters | None = None,
    max_points: int = 200,
    x_max: float | None = None,
    points_per_run: int | None = None,
) -> pd.DataFrame:
    """A metric aggregated across the runs of each group, downsampled, in one SQL query.

    The points of all runs of a group that fall into one x bucket are aggregated together
    (one ``GROUP BY group…, floor(x / width)``). With the default sizing (see
    ``bucket_width``) a bucket holds one point per run unless the curves are longer than
    ``max_points``, so mean, min, max and std are taken across runs (seeds); for longer
    curves each run contributes its few points in the bucket, which widens min/max by the
    within-bucket noise. A two-level aggregate (per run, then across runs) would be exact
    there but costs a sort of every point on SQLite (about 2.5× the time), for a difference
    nobody can see at dashboard resolution.

    Args:
        name, scope: The metric, e.g. ``val_loss``/``epoch``.
        x: ``step``, ``epoch`` or ``wall_time`` (seconds since the trial started).
        group_by: Trial columns (``GROUPABLE``) whose values make one line each.
        filters: Which trials to include.
        max_points: At most this many buckets per line.
        x_max, points_per_run: From ``metric_catalog``; ``x_max`` is queried when missing.

    Returns:
        Columns: the ``group_by`` columns, ``bucket, x, mean, min, max, std, n`` where ``n``
        is the number of finite values in the bucket, ``std`` their sample standard
        deviation (NaN for one value), sorted by group and x. Non-finite values (a diverged
        run's last point) are ignored.
    """
    import numpy as np

    _check_metric(name, scope)
    filters = filters or AxisFilters()
    groups = list(dict.fromkeys(group_by))
    group_cols = _group_columns(groups)
    t, m = TRIALS.c, METRICS.c
    with _engine(source).connect() as conn:
        if x_max is None:
            x_max = _x_max(conn, sweep_id, name, scope, x, filters)
        width = bucket_width(x, x_max, max_points, points_per_run)
        bucket = _bucket(x, width).label("bucket")
        stmt = (
            select(
                *group_cols,
                bucket,
                func.avg(_x_column(x)),
                func.avg(m.value),
                func.min(m.value),
                func.max(m.value),
                func.sum(m.value * m.value),
                func.count(m.value),
            )
            .join_from(METRICS, TRIALS, m.trial_id == t.id)
            .where(
                t.sweep_id == sweep_id,
                m.name == bindparam("metric_name", name),
                m.scope == bindparam("metric_scope", scope),
                *filters.where(),
            )
            .group_by(*group_cols, bucket)
            .order_by(*group_cols, bucket)
        )
        rows = conn.execute(stmt).all()
    frame = _frame(rows, (*groups, "bucket", "x", "mean", "min", "max", "sumsq", "n"))
    _numeric(frame, ("x", "mean", "min", "max", "sumsq"))
    frame["bucket"] = frame["bucket"].astype("int64")
    frame["n"] = frame["n"].astype("int64")
    for col in groups:
        frame[col] = frame[col].astype("int64" if col == "seed" else "str")
    n = frame["n"].to_numpy(dtype="float64")
    mean = frame["mean"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (frame["sumsq"].to_numpy() - n * mean * mean) / (n - 1)
    frame["std"] = np.where(n > 1, np.sqrt(np.clip(var, 0.0, None)), np.nan)
    return frame[[*groups, "bucket", "x", "mean", "min", "max", "std", "n"]]


def run_curves(
    source: Store | Engine,
    sweep_id: int,
    *,
    name: str,
    scope: str,
    x: str = "step",
    filters: AxisFilters | None = None,
    trial_ids: Sequence[int] | None = None,
    max_points: int = 200,
    x_max: float | None = None,
    points_per_run: int | None = None,
    axes: bool = True,
) -> pd.DataFrame:
    """One downsampled curve per run (the mean of each run's points per x bucket), in SQL.

    Args:
        axes: Also return each run's axes, seed and status; ``False`` returns only
            ``trial_id, bucket, x, value`` (a third of the data to move, for a caller that
            has the trials' columns already, e.g. the LR strip of 1,000 runs).

    Returns:
        Columns ``trial_id, workload, optimizer, scheduler, regularizer, seed, status,
        bucket, x, value`` sorted by trial and x; ``value`` is NaN where a bucket held only
        non-finite points.
    """
    _check_metric(name, scope)
    filters = filters or AxisFilters()
    t, m = TRIALS.c, METRICS.c
    info = [t.workload, t.optimizer, t.scheduler, t.regularizer, t.seed, t.status] \
        if axes else []
    with _engine(source).connect() as conn:
        if x_max is None:
            x_max = _x_max(conn, sweep_id, name, scope, x, filters)
        width = bucket_width(x, x_max, max_points, points_per_run)
        bucket = _bucket(x, width).label("bucket")
        # Grouping by the trial's primary key lets PostgreSQL (functional dependency) and
        # SQLite select the trial's other columns without grouping by them too.
        stmt = (
            select(
                t.id, *info, bucket, func.avg(_x_column(x)), func.avg(m.value),
            )
            .join_from(METRICS, TRIALS, m.trial_id == t.id)
            .where(
                t.sweep_id == sweep_id,
                m.name == bindparam("metric_name", name),
                m.scope == bindparam("metric_scope", scope),
                *filters.where(),
            )
            .group_by(t.id, bucket)
            .order_by(t.id, bucket)
        )
        if trial_ids is not None:
            stmt = stmt.where(t.id.in_([int(i) for i in trial_ids]) if trial_ids else false())
        rows = conn.execute(stmt).all()
    if not axes:
        import numpy as np
        import pandas as pd

        # Plain tuples first: NumPy reading SQLAlchemy rows goes through their key lookups.
        arr = np.array([tuple(r) for r in rows], dtype="float64").reshape(-1, 4)
        return pd.DataFrame({"trial_id": arr[:, 0].astype("int64"),
                             "bucket": arr[:, 1].astype("int64"), "x": arr[:, 2],
                             "value": arr[:, 3]})
    columns = ("trial_id", *AXES, "seed", "status", "bucket", "x", "value")
    frame = _frame(rows, columns)
    for col in ("trial_id", "seed", "bucket"):
        frame[col] = frame[col].astype("int64")
    for col in (*AXES, "status"):
        frame[col] = frame[col].astype("str")
    return _numeric(frame, ("x", "value"))


def divergence_points(
    source: Store | Engine,
    sweep_id: int,
    *,
    name: str,
    scope: str,
    filters: AxisFilters | None = None,
) -> pd.DataFrame:
    """Where each diverged run blew up, to mark it on a curve of metric ``name``.

    Returns one row per diverged trial (matching ``filters``): its axes, seed,
    ``diverged_step`` and the last finite point of the metric (``step, epoch, wall_time,
    value``; NaN when the run never recorded a finite value of it).
    """
    _check_metric(name, scope)
    filters = filters or AxisFilters()
    t, m = TRIALS.c, METRICS.c
    diverged = [t.sweep_id == sweep_id, t.status == "diverged", *filters.where()]
    last = (
        select(m.trial_id, func.max(m.id).label("point_id"))
        .join_from(METRICS, TRIALS, m.trial_id == t.id)
        .where(*diverged, m.name == name, m.scope == scope, m.value.is_not(None))
        .group_by(m.trial_id)
        .subquery()
    )
    stmt = (
        select(
            t.id, *(t[a] for a in AXES), t.seed, t.diverged_step,
            m.step, m.epoch, m.wall_time, m.value,
        )
        .select_from(TRIALS)
        .outerjoin(last, last.c.trial_id == t.id)
        .outerjoin(METRICS, m.id == last.c.point_id)
        .where(*diverged)
        .order_by(t.id)
    )
    with _engine(source).connect() as conn:
        rows = conn.execute(stmt).all()
    frame = _frame(rows, ("trial_id", *AXES, "seed", "diverged_step", "step", "epoch",
                          "wall_time", "value"))
    frame["trial_id"] = frame["trial_id"].astype("int64")
    for col in AXES:
        frame[col] = frame[col].astype("str")
    return _numeric(frame, ("seed", "diverged_step", "step", "epoch", "wall_time", "value"))


#: The largest trial id worth asking for: ids are 32-bit ``INTEGER`` on PostgreSQL (a larger
#: bound parameter is an error there, and beyond 2⁶³ on SQLite), so larger ones exist nowhere.
MAX_ID = 2**31 - 1


def trial_detail(source: Store | Engine, trial_id: int) -> dict[str, Any] | None:
    """One trial's row as a plain dict (every column the database has), or ``None`` (also for
    an id outside ``1..MAX_ID``, which no trial can have).

    Unlike ``Store.trial`` this reads databases of older schema revisions too (the dashboard
    never migrates what it shows): columns a revision added are simply absent from the dict.
    The ``sweep`` key holds the sweep's name.
    """
    if not isinstance(trial_id, int) or not 1 <= trial_id <= MAX_ID:
        return None
    with _engine(source).connect() as conn:
        present = _existing_columns(conn, TRIALS.name) or set()
        columns = [c for c in TRIALS.c if c.name in present]
        row = conn.execute(
            select(*columns, SWEEPS.c.name.label("sweep"))
            .join_from(TRIALS, SWEEPS, TRIALS.c.sweep_id == SWEEPS.c.id)
            .where(TRIALS.c.id == trial_id)
        ).mappings().first()
    return None if row is None else dict(row)


def schema_revision(source: Store | Engine) -> tuple[str | None, str]:
    """(the database's schema revision, the newest this package knows): equal when current.

    The dashboard opens databases read-only, without upgrading them, and says so when they
    are behind, since some details (e.g. tuning summaries) then cannot be shown.
    """
    from bench_service.store.migrate import head_revision, revision_of

    with _engine(source).connect() as conn:
        return revision_of(conn), head_revision()


def trial_points(source: Store | Engine, trial_id: int) -> pd.DataFrame:
    """Every metric point of one trial: ``name, scope, step, epoch, wall_time, value`` with
    non-finite values restored (a diverged run's last point is often ``inf``/``nan``)."""
    from bench_service.store._types import SPECIAL_VALUES

    m = METRICS.c
    stmt = (
        select(m.name, m.scope, m.step, m.epoch, m.wall_time, m.value, m.special)
        .where(m.trial_id == trial_id)
        .order_by(m.name, m.scope, m.step, m.id)
    )
    with _engine(source).connect() as conn:
        rows = conn.execute(stmt).all()
    frame = _frame(rows, ("name", "scope", "step", "epoch", "wall_time", "value", "special"))
    for col in ("name", "scope"):
        frame[col] = frame[col].astype("str")
    for col in ("step", "epoch"):
        frame[col] = frame[col].astype("int64")
    _numeric(frame, ("wall_time", "value"))
    special = frame["special"].notna()
    if special.any():
        frame.loc[special, "value"] = frame.loc[special, "special"].map(SPECIAL_VALUES)
    return frame.drop(columns="special")


# --------------------------------------------------------------------------- tuning


#: Columns of ``bench_cells`` the Tuning page shows, where the database has them.
CELL_COLUMNS: tuple[str, ...] = (
    "cell_key", "label", "workload", "optimizer", "scheduler", "regularizer",
    "objective_metric", "objective_mode", "n_tuning", "n_pruned", "n_diverged", "best_value",
    "best_params", "importance", "tuning_cpu_seconds", "tuning_gpu_seconds",
)


def _existing_columns(conn: Connection, table: str) -> set[str] | None:
    inspector = inspect(conn)
    if not inspector.has_table(table):
        return None
    return {c["name"] for c in inspector.get_columns(table)}


def tuned_cells(source: Store | Engine, sweep_id: int) -> pd.DataFrame | None:
    """The tuner's per-cell summary (``bench_cells``: budget used, best value and params,
    cost, parameter importance), or ``None`` where the database has no such table.

    The dashboard opens databases without migrating them, so an older schema (before the
    tuning revision) is a normal state: only the columns that exist are read.
    """
    from bench_service.store.models import Cell

    cells = cast(Table, Cell.__table__)
    with _engine(source).connect() as conn:
        present = _existing_columns(conn, cells.name)
        if present is None or not {"sweep_id", "cell_key"} <= present:
            return None
        wanted = [c for c in CELL_COLUMNS if c in present]
        rows = conn.execute(
            select(*(cells.c[c] for c in wanted))
            .where(cells.c.sweep_id == sweep_id)
            .order_by(cells.c.id)
        ).all()
    frame = _frame(rows, wanted)
    for name in CELL_COLUMNS:
        if name not in frame:
            frame[name] = None
    return frame[list(CELL_COLUMNS)]


def cell_importance(source: Store | Engine, sweep_id: int) -> pd.DataFrame | None:
    """Parameter importance per tuned cell, long form, or ``None`` where none is stored yet.

    Returns:
        Columns ``cell_key, param, importance`` (one row per cell and parameter), or ``None``.
    """
    import pandas as pd

    cells = tuned_cells(source, sweep_id)
    if cells is None:
        return None
    out: list[tuple[str, str, float]] = []
    for cell_key, value in zip(cells["cell_key"], cells["importance"], strict=True):
        if not isinstance(value, Mapping):
            continue
        for param, weight in value.items():
            try:
                out.append((str(cell_key), str(param), float(weight)))
            except (TypeError, ValueError):
                continue
    if not out:
        return None
    return pd.DataFrame(out, columns=["cell_key", "param", "importance"])


def finished_statuses() -> tuple[str, ...]:
    """Trial statuses that ended an attempt, in lifecycle order (for progress bars)."""
    return tuple(s for s in TRIAL_STATUSES if s in TRIAL_ENDED)
