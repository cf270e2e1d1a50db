"""The ``Store`` facade: every read and write of sweeps, trials and metrics.

Callers get plain dataclasses (``SweepInfo``, ``TrialInfo``) or pandas frames, never ORM rows.
Writes go through SQLAlchemy Core in short transactions: metric batches are one executemany
each, and multi-row changes (a sweep with its trials, a restarted trial) are one transaction,
so a crash never leaves half of them behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError

from bench_service.engine.records import MetricPoint, TrialResult
from bench_service.store import _frames
from bench_service.store._types import finite_or_none, special_of, utcnow
from bench_service.store.db import (
    SQLITE_BUSY_TIMEOUT_S,
    busy_timeout_s,
    check_connection,
    database_error,
    is_database_error,
    is_locked_error,
    make_engine,
    mask_url,
    resolve_url,
    sqlite_file,
    writer,
)
from bench_service.store.entities import (
    AXES,
    ROLES,
    RUNNABLE_STATUSES,
    SCOPES,
    SWEEP_STATUSES,
    SWEEP_TERMINAL,
    TRIAL_STATUSES,
    TRIAL_TERMINAL,
    NewTrial,
    SweepInfo,
    TrialInfo,
)
from bench_service.store.errors import (
    NoDatabaseError,
    ReadOnlyDatabaseError,
    SchemaVersionError,
    StoreError,
    SweepExistsError,
)
from bench_service.store.migrate import check_revision, head_revision, revision_of, upgrade_engine
from bench_service.store.models import VERSION_TABLE, Cell, Metric, Sweep, Trial
from bench_service.store.optuna_tables import delete_studies

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

SWEEPS = cast(Table, Sweep.__table__)
TRIALS = cast(Table, Trial.__table__)
METRICS = cast(Table, Metric.__table__)
CELLS = cast(Table, Cell.__table__)
#: Our Alembic version table (for ``check_writable``'s no-op write).
VERSION = sa_table(VERSION_TABLE, sa_column("version_num"))
#: Columns of ``cells_frame`` (one row per tuned cell).
CELL_COLUMNS = tuple(c.name for c in Cell.__table__.columns if c.name not in ('id', 'sweep_id'))

#: The cost of a step, per trial (revision 0005; ``engine.cost``).
COST_COLUMNS = ("step_time_mean", "step_time_p90", "optimizer_state_bytes", "peak_memory_bytes")
#: Keys ``finish_trial`` writes (``TrialResult``'s fields except ``metrics`` and ``extra``).
SUMMARY_KEYS: frozenset[str] = frozenset(
    {
        "status",
        "final",
        "best",
        "steps",
        "epochs",
        "wall_time",
        "examples_per_sec",
        *COST_COLUMNS,
        "diverged_step",
        "error",
        "step_to_target",
        "time_to_target",
        "device",
    }
)
#: ``TrialResult`` keys ``finish_trial`` accepts and ignores: metrics are streamed with
#: ``append_metrics``; ``extra`` has no column.
_IGNORED_SUMMARY_KEYS = frozenset({"metrics", "extra"})


def execution_note(extra: Any) -> str | None:
    """The ``execution`` column from a result's ``extra["pack"]`` (set by the packed runner):
    ``packed (K members)`` or ``unpacked: <reason>``; ``None`` for a trial run on its own."""
    pack = extra.get("pack") if isinstance(extra, dict) else None
    if not isinstance(pack, dict):
        return None
    if "unpacked" in pack:
        return f"unpacked: {pack['unpacked']}"[:255]
    return f"packed ({int(pack.get('members', 1))} members)"


#: Scalar summary columns ← (``final`` or ``best``, metric name).
SCALAR_SUMMARY: dict[str, tuple[str, str]] = {
    "final_val_loss": ("final", "val_loss"),
    "final_val_accuracy": ("final", "val_accuracy"),
    "final_train_loss": ("final", "train_loss"),
    "best_val_loss": ("best", "val_loss"),
    "best_val_accuracy": ("best", "val_accuracy"),
}
#: Columns cleared when a trial (re)starts, so a retry never shows the last attempt's result.
_RESULT_COLUMNS = (
    "error",
    "diverged_step",
    "steps",
    "epochs",
    "wall_time",
    "examples_per_sec",
    *COST_COLUMNS,
    "time_to_target",
    "step_to_target",
    "final",
    "best",
    *SCALAR_SUMMARY,
    "finished_at",
)
#: Trial statuses of an attempt that has not ended (``pending``, ``running``).
_NOT_ENDED: tuple[str, ...] = tuple(s for s in TRIAL_STATUSES if s not in TRIAL_TERMINAL)
#: Trial columns whose values ``values_of`` lists.
_VALUE_COLUMNS: tuple[str, ...] = (*AXES, "status", "role")
_TRIAL_FIELDS = tuple(f.name for f in fields(TrialInfo))
_SWEEP_FIELDS = tuple(f.name for f in fields(SweepInfo) if f.name != "counts")
#: Attempts of a write transaction that SQLite refused as locked early (in the first half of
#: the busy timeout; a write that waited longer is not retried: see ``Store._write``).
_LOCK_RETRIES = 4
#: Rows per ``IN (...)`` list, well under SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 500


class Store:
    """The results database: sweeps, their trials and every trial's metric points.

    One ``Store`` per process; it is cheap to pickle (only the URL travels) so it can be
    handed to Ray workers, which reopen it without re-running migrations.

    Args:
        url: Database URL or SQLite file path (see ``resolve_url``); ``None`` uses
            ``$BENCH_DB_URL``, then ``./bench.db``.
        upgrade: Bring the schema to the newest revision on open.
        create: Whether opening may create the database and our schema. ``False`` (read
            paths: see ``open_existing``) requires an existing database holding the bench
            schema and never creates a file or a table.
        busy_timeout: Seconds a SQLite write waits for another process's lock (default
            ``$BENCH_DB_BUSY_TIMEOUT`` or 30).

    Raises:
        NoDatabaseError: ``create=False`` and the file does not exist or has no bench schema.
        SchemaVersionError: The bench schema is newer than this package knows (or, with
            ``create=False, upgrade=False``, older than it needs).
        StoreError: The URL is malformed or the database cannot be reached.
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        upgrade: bool = True,
        create: bool = True,
        busy_timeout: float | None = None,
    ) -> None:
        self.url: str = resolve_url(url)
        if not create:
            _require_file(self.url)
        self.engine: Engine = make_engine(self.url, busy_timeout=busy_timeout)
        self._busy_timeout = busy_timeout_s() if busy_timeout is None else busy_timeout
        self._writer = writer(self.engine)
        try:
            check_connection(self.engine)
            if not create:
                self._require_schema(upgrade)
            elif upgrade:
                upgrade_engine(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open_existing(
        cls, url: str | os.PathLike[str] | None = None, *, busy_timeout: float | None = None
    ) -> Store:
        """Open a database for reading: it must exist and hold the bench schema at head.

        What every read path (``bench sweeps``/``results``/``dashboard``, the API's reads)
        uses: a mistyped path says the file does not exist instead of creating an empty
        database, and nothing is created or migrated (an older schema says to run ``bench db
        upgrade``; a newer one to upgrade bench). The store can still write.

        Raises:
            NoDatabaseError: The file does not exist, or the database has no bench schema.
            SchemaVersionError: The schema is older or newer than this package's.
            StoreError: The URL is malformed or the database cannot be reached.
        """
        return cls(url, upgrade=False, create=False, busy_timeout=busy_timeout)

    def check_writable(self) -> None:
        """Take and release the write lock once, so that a read-only or locked database
        fails up front (one line) rather than halfway through a command.

        Raises:
            ReadOnlyDatabaseError: The database cannot be written.
            DatabaseLockedError: Another process held the write lock past the busy timeout.
        """

        def probe(conn: Connection) -> None:
            if conn.dialect.name == "postgresql":
                read_only = conn.scalar(text("SHOW transaction_read_only"))
                if str(read_only).lower() == "on":
                    raise ReadOnlyDatabaseError(
                        f"database {mask_url(self.url)} is read-only (transaction_read_only is "
                        "on): this command needs to write to it"
                    )
            else:
                # SQLite reports a read-only file only when something is written: touch our
                # version row (a no-op write) inside the probe transaction.
                conn.execute(update(VERSION).values(version_num=VERSION.c.version_num))

        self._write(probe)

    def _require_schema(self, upgrade: bool) -> None:
        """``create=False``: our schema must be there, at a revision this package can use."""
        with self._reading() as conn:
            revision = revision_of(conn)
        if revision is None:
            raise NoDatabaseError(
                f"database {mask_url(self.url)} has no bench schema (no sweeps were ever "
                "stored there): check --db / $BENCH_DB_URL, or run `bench db upgrade` or "
                "`bench run SPEC` first"
            )
        check_revision(revision, self.url)
        if revision == head_revision():
            return
        if upgrade:
            upgrade_engine(self.engine)
            return
        raise SchemaVersionError(
            f"database {mask_url(self.url)} is at bench schema revision {revision!r}, older "
            f"than this bench's {head_revision()!r}: run `bench db upgrade --db URL` first"
        )

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    def __reduce__(self) -> tuple[Callable[[str, float], Store], tuple[str, float]]:
        return (_reopen, (self.url, self._busy_timeout))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ sweeps

    def create_sweep(
        self,
        name: str,
        spec: Mapping[str, Any],
        spec_hash: str,
        trials: Sequence[NewTrial],
        *,
        description: str | None = None,
    ) -> SweepInfo:
        """Insert a sweep and all its trials (``pending``) in one transaction.

        If any row fails (a duplicate ``trial_hash``, a bad role) nothing is written.
        ``description`` defaults to the spec's own ``description``.

        Raises:
            SweepExistsError: A sweep called ``name`` exists already.
            StoreError: A trial row was rejected.
        """

        if description is None and spec.get("description") is not None:
            description = str(spec["description"])

        def tx(conn: Connection) -> int:
            if conn.scalar(select(SWEEPS.c.id).where(SWEEPS.c.name == name)) is not None:
                raise SweepExistsError(f"sweep {name!r} already exists")
            now = utcnow()
            result = conn.execute(
                insert(SWEEPS).values(
                    name=name,
                    spec=dict(spec),
                    spec_hash=spec_hash,
                    status="pending",
                    n_trials=len(trials),
                    description=description,
                    created_at=now,
                )
            )
            sweep_id = int(cast(Any, result.inserted_primary_key)[0])
            if trials:
                conn.execute(insert(TRIALS), [_trial_row(sweep_id, t, now) for t in trials])
            return sweep_id

        try:
            sweep_id = self._write(tx)
        except IntegrityError as exc:
            if _violates(exc, "uq_bench_sweeps_name", "bench_sweeps.name"):
                raise SweepExistsError(f"sweep {name!r} already exists") from exc
            raise StoreError(
                f"cannot create sweep {name!r}, nothing was written: {_first_line(exc)}"
            ) from exc
        info = self._sweep_by("id", sweep_id)
        assert info is not None
        return info

    def add_trials(self, sweep_id: int, trials: Sequence[NewTrial]) -> list[TrialInfo]:
        """Insert the trials whose ``trial_hash`` is new in the sweep; idempotent.

        Used by tuners that add trials as they go. Returns the current row of every requested
        trial, in request order (an existing trial comes back as it is, not reset).
        """

        def tx(conn: Connection) -> None:
            self._require_sweep_id(conn, sweep_id)
            existing = set(
                conn.scalars(select(TRIALS.c.trial_hash).where(TRIALS.c.sweep_id == sweep_id))
            )
            now = utcnow()
            rows: list[dict[str, Any]] = []
            for t in trials:
                if t.trial_hash not in existing:
                    existing.add(t.trial_hash)
                    rows.append(_trial_row(sweep_id, t, now))
            if not rows:
                return
            stmt: Any = insert(TRIALS)
            if conn.dialect.name == "postgresql":
                # Another process may add the same trial concurrently (SQLite's IMMEDIATE
                # transaction already excludes that).
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt = pg_insert(TRIALS).on_conflict_do_nothing(
                    index_elements=["sweep_id", "trial_hash"]
                )
            conn.execute(stmt, rows)
            n_trials = (
                select(func.count())
                .select_from(TRIALS)
                .where(TRIALS.c.sweep_id == sweep_id)
                .scalar_subquery()
            )
            conn.execute(update(SWEEPS).where(SWEEPS.c.id == sweep_id).values(n_trials=n_trials))

        try:
            self._write(tx)
        except IntegrityError as exc:
            raise StoreError(
                f"cannot add trials to sweep {sweep_id}, nothing was written: {_first_line(exc)}"
            ) from exc
        hashes = [t.trial_hash for t in trials]
        by_hash: dict[str, TrialInfo] = {}
        with self._reading() as conn:
            for chunk in _chunks(list(dict.fromkeys(hashes)), _IN_CHUNK):
                result = conn.execute(
                    select(TRIALS).where(
                        TRIALS.c.sweep_id == sweep_id, TRIALS.c.trial_hash.in_(chunk)
                    )
                )
                for row in result.mappings():
                    by_hash[row["trial_hash"]] = _trial_info(row)
        return [by_hash[h] for h in hashes]

    def get_sweep(self, name: str) -> SweepInfo | None:
        """The sweep called ``name`` with its status counts, or ``None``."""
        return self._sweep_by("name", name)

    def list_sweeps(self) -> list[SweepInfo]:
        """All sweeps, oldest first, each with its status counts (two queries in all)."""
        with self._reading() as conn:
            rows = conn.execute(select(SWEEPS).order_by(SWEEPS.c.id)).mappings().all()
            counts: dict[int, dict[str, int]] = {}
            grouped = conn.execute(
                select(TRIALS.c.sweep_id, TRIALS.c.status, func.count()).group_by(
                    TRIALS.c.sweep_id, TRIALS.c.status
                )
            )
            for sweep_id, status, n in grouped:
                counts.setdefault(sweep_id, _zero_counts())[status] = int(n)
        return [_sweep_info(row, counts.get(row["id"], _zero_counts())) for row in rows]

    def set_sweep_status(self, sweep_id: int, status: str) -> None:
        """Set a sweep's status and its timestamps.

        ``running`` sets ``started_at`` the first time and clears ``finished_at`` (a resumed
        sweep is not finished); a terminal status sets ``finished_at``.
        """
        _check_status(status, SWEEP_STATUSES, "sweep")

        def tx(conn: Connection) -> None:
            self._require_sweep_id(conn, sweep_id)
            started = conn.scalar(select(SWEEPS.c.started_at).where(SWEEPS.c.id == sweep_id))
            now = utcnow()
            values: dict[str, Any] = {"status": status}
            if status == "running":
                values["started_at"] = started or now
                values["finished_at"] = None
            elif status in SWEEP_TERMINAL:
                values["finished_at"] = now
            conn.execute(update(SWEEPS).where(SWEEPS.c.id == sweep_id).values(**values))

        self._write(tx)

    def delete_sweep(self, name: str) -> bool:
        """Delete a sweep with everything it owns; ``False`` if there was none.

        Its trials, metrics, tuned-cell rows and its Optuna studies (those named in its
        ``bench_cells`` rows, and any named ``<sweep>/...``, the tuner's naming) go in the same
        transaction, so a sweep re-created under the name starts from nothing, with its full
        tuning budget, instead of loading the old studies.
        """

        def tx(conn: Connection) -> bool:
            sweep_id = conn.scalar(select(SWEEPS.c.id).where(SWEEPS.c.name == name))
            if sweep_id is None:
                return False
            studies = list(conn.scalars(
                select(CELLS.c.study_name).where(CELLS.c.sweep_id == sweep_id)))
            delete_studies(conn, studies, prefix=f"{name}/")
            # Explicit child deletes: correct even on a connection without foreign keys.
            trial_ids = select(TRIALS.c.id).where(TRIALS.c.sweep_id == sweep_id)
            conn.execute(delete(METRICS).where(METRICS.c.trial_id.in_(trial_ids)))
            conn.execute(delete(TRIALS).where(TRIALS.c.sweep_id == sweep_id))
            conn.execute(delete(CELLS).where(CELLS.c.sweep_id == sweep_id))
            conn.execute(delete(SWEEPS).where(SWEEPS.c.id == sweep_id))
            return True

        return self._write(tx)

    def values_of(self, sweep: str, column: str) -> list[str]:
        """The distinct values of a trial column in one sweep, sorted (what a filter on it
        can match: ``column`` is an axis, ``status`` or ``role``).

        Raises:
            StoreError: ``sweep`` names no sweep, or ``column`` is not filterable.
        """
        if column not in _VALUE_COLUMNS:
            raise StoreError(f"cannot list values of {column!r}; valid: "
                             f"{', '.join(_VALUE_COLUMNS)}")
        with self._reading() as conn:
            sweep_id = self._sweep_id_or_error(conn, sweep)
            col = TRIALS.c[column]
            return sorted(str(v) for v in conn.scalars(
                select(col).where(TRIALS.c.sweep_id == sweep_id).distinct()))

    # ------------------------------------------------------------------ trials

    def trial(self, trial_id: int) -> TrialInfo:
        """One trial by id.

        Raises:
            StoreError: No such trial.
        """
        with self._reading() as conn:
            row = conn.execute(select(TRIALS).where(TRIALS.c.id == trial_id)).mappings().first()
        if row is None:
            raise StoreError(f"unknown trial id {trial_id}")
        return _trial_info(row)

    def trials_to_run(
        self, sweep_id: int, statuses: Iterable[str] = RUNNABLE_STATUSES
    ) -> list[TrialInfo]:
        """The sweep's trials in ``statuses`` (by default all that did not end on their own).

        ``running`` is included by default because a trial still marked running when its
        sweep is resumed belongs to a driver that died.
        """
        wanted = list(statuses)
        for status in wanted:
            _check_status(status, TRIAL_STATUSES, "trial")
        with self._reading() as conn:
            rows = conn.execute(
                select(TRIALS)
                .where(TRIALS.c.sweep_id == sweep_id, TRIALS.c.status.in_(wanted))
                .order_by(TRIALS.c.id)
            ).mappings()
            return [_trial_info(row) for row in rows]

    def start_trial(
        self,
        trial_id: int,
        host: str | None = None,
        device: str | None = None,
        versions: Mapping[str, Any] | None = None,
        started_at: datetime | None = None,
    ) -> int:
        """Mark a trial ``running`` for a new attempt and return the attempt number (1, 2, ...).

        In the same transaction the metrics of any earlier, interrupted attempt are deleted
        and the previous result columns cleared, so a retried trial never stores a point twice
        and never shows a stale result. ``started_at`` defaults to now (a worker passes the
        time its attempt began, which may be a moment before this write).

        Raises:
            StoreError: No such trial.
        """
        return self._write(
            lambda conn: _start_attempt(conn, trial_id, host, device, versions, started_at)
        )

    def append_metrics(self, trial_id: int, points: Sequence[MetricPoint]) -> None:
        """Store a batch of metric points (one executemany) and refresh the heartbeat.

        Non-finite values are stored as ``value = NULL`` plus ``special`` = ``nan``/``inf``/
        ``-inf`` and come back as floats from ``curves_frame``.

        Raises:
            StoreError: No such trial, or a point was rejected (e.g. an unknown scope).
        """
        rows = [_metric_row(trial_id, p) for p in points]

        def tx(conn: Connection) -> None:
            if rows:
                conn.execute(insert(METRICS), rows)
            conn.execute(
                update(TRIALS).where(TRIALS.c.id == trial_id).values(heartbeat_at=utcnow())
            )

        try:
            self._write(tx)
        except IntegrityError as exc:
            raise StoreError(
                f"cannot store metrics of trial {trial_id}: {_first_line(exc)}"
            ) from exc

    def set_trial_error(self, trial_id: int, error: str | None) -> None:
        """Set a trial's ``error`` text while it runs (metric writes that failed, say), so the
        record shows it before the outcome (whose ``error`` replaces it) arrives."""
        self._write(lambda conn: conn.execute(
            update(TRIALS).where(TRIALS.c.id == trial_id).values(error=error)))

    def heartbeat(self, trial_id: int) -> None:
        """Record that a running trial is alive (for long stretches without metrics)."""

        def tx(conn: Connection) -> None:
            conn.execute(
                update(TRIALS).where(TRIALS.c.id == trial_id).values(heartbeat_at=utcnow())
            )

        self._write(tx)

    def finish_trial(
        self,
        trial_id: int,
        result_summary: Mapping[str, Any] | TrialResult,
        points: Sequence[MetricPoint] = (),
        start: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a trial's outcome, with its last metric points in the same transaction.

        ``points`` saves a round trip for short trials, whose whole curve arrives at the end.
        ``start`` (the keyword arguments of ``start_trial``) starts the attempt in the same
        transaction, for a trial that ended before it ever reported: one write instead of two.

        ``result_summary`` holds ``TrialResult``'s fields except ``metrics`` (a ``TrialResult``
        itself, or its ``to_dict()``, is accepted too: ``metrics`` and ``extra`` are ignored).
        ``final``/``best`` are stored faithfully as JSON (non-finite values included); the
        scalar columns ``final_val_loss`` etc. and the float columns hold finite values only,
        anything else becomes ``NULL`` so that sorting in SQL behaves the same everywhere.

        Raises:
            StoreError: Unknown keys, a missing or invalid status, or no such trial.
        """
        if isinstance(result_summary, TrialResult):
            summary: dict[str, Any] = {k: getattr(result_summary, k) for k in SUMMARY_KEYS}
        else:
            summary = dict(result_summary)
        unknown = set(summary) - SUMMARY_KEYS - _IGNORED_SUMMARY_KEYS
        if unknown:
            raise StoreError(
                f"unknown result keys {sorted(unknown)}; valid: {sorted(SUMMARY_KEYS)}"
            )
        status = summary.get("status")
        _check_status(status, TRIAL_TERMINAL, "finished trial")
        final = dict(summary.get("final") or {})
        best = dict(summary.get("best") or {})
        now = utcnow()
        values: dict[str, Any] = {
            "status": status,
            "final": final,
            "best": best,
            "steps": summary.get("steps"),
            "epochs": summary.get("epochs"),
            "wall_time": finite_or_none(summary.get("wall_time")),
            "examples_per_sec": finite_or_none(summary.get("examples_per_sec")),
            "step_time_mean": finite_or_none(summary.get("step_time_mean")),
            "step_time_p90": finite_or_none(summary.get("step_time_p90")),
            "optimizer_state_bytes": summary.get("optimizer_state_bytes"),
            "peak_memory_bytes": summary.get("peak_memory_bytes"),
            "diverged_step": summary.get("diverged_step"),
            "error": summary.get("error"),
            "step_to_target": summary.get("step_to_target"),
            "time_to_target": finite_or_none(summary.get("time_to_target")),
            "finished_at": now,
            "heartbeat_at": now,
        }
        if summary.get("device") is not None:
            values["device"] = summary["device"]
        extra = (result_summary.extra if isinstance(result_summary, TrialResult)
                 else summary.get("extra"))
        execution = execution_note(extra)
        if execution is not None:
            values["execution"] = execution
        sources = {"final": final, "best": best}
        for column, (source, metric) in SCALAR_SUMMARY.items():
            values[column] = finite_or_none(sources[source].get(metric))

        rows = [_metric_row(trial_id, p) for p in points]
        begun = dict(start) if start is not None else None
        if begun is not None and set(begun) - _START_KEYS:
            raise StoreError(f"unknown start keys {sorted(set(begun) - _START_KEYS)}; "
                             f"valid: {sorted(_START_KEYS)}")

        def tx(conn: Connection) -> None:
            if begun is not None:
                _start_attempt(conn, trial_id, **begun)
            result = conn.execute(update(TRIALS).where(TRIALS.c.id == trial_id).values(values))
            if result.rowcount == 0:
                raise StoreError(f"unknown trial id {trial_id}")
            if rows:
                conn.execute(insert(METRICS), rows)

        self._write(tx)

    def mark_unfinished(self, sweep_id: int, status: str = "cancelled") -> int:
        """Set every ``pending``/``running`` trial of the sweep to ``status``; returns how many.

        Used when a sweep is cancelled or its driver found stale ``running`` rows.
        """
        _check_status(status, TRIAL_STATUSES, "trial")
        values: dict[str, Any] = {"status": status}
        if status in TRIAL_TERMINAL:
            values["finished_at"] = utcnow()

        def tx(conn: Connection) -> int:
            result = conn.execute(
                update(TRIALS)
                .where(
                    TRIALS.c.sweep_id == sweep_id,
                    TRIALS.c.status.in_(_NOT_ENDED),
                )
                .values(values)
            )
            return int(result.rowcount)

        return self._write(tx)

    def status_counts(self, sweep_id: int) -> dict[str, int]:
        """How many trials of the sweep are in each status (every status is a key)."""
        with self._reading() as conn:
            return _status_counts(conn, sweep_id)

    # ------------------------------------------------------------------ tuning

    def set_objective(self, trial_id: int, value: float | None) -> None:
        """Store a trial's tuning objective (non-finite values become NULL)."""

        def tx(conn: Connection) -> None:
            conn.execute(update(TRIALS).where(TRIALS.c.id == trial_id)
                         .values(objective=finite_or_none(value)))

        self._write(tx)

    def upsert_cell(self, sweep_id: int, cell_key: str, **values: Any) -> None:
        """Create or update the summary row of one tuned cell (``bench_cells``)."""
        unknown = set(values) - set(CELL_COLUMNS)
        if unknown:
            raise StoreError(f"unknown cell fields {sorted(unknown)}; valid: {CELL_COLUMNS}")
        values = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in values.items()}
        values["updated_at"] = utcnow()

        def tx(conn: Connection) -> None:
            self._require_sweep_id(conn, sweep_id)
            where = (CELLS.c.sweep_id == sweep_id, CELLS.c.cell_key == cell_key)
            if conn.scalar(select(CELLS.c.id).where(*where)) is None:
                conn.execute(insert(CELLS).values(sweep_id=sweep_id, cell_key=cell_key, **values))
            else:
                conn.execute(update(CELLS).where(*where).values(values))

        self._write(tx)

    def cells_frame(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per tuned cell: study, best params and value, cost, importances."""
        import pandas as pd

        with self._reading() as conn:
            sweep_id = self._sweep_id_or_error(conn, sweep)
            stmt = select(SWEEPS.c.name.label("sweep"), *(CELLS.c[c] for c in CELL_COLUMNS)) \
                .join_from(CELLS, SWEEPS, CELLS.c.sweep_id == SWEEPS.c.id).order_by(CELLS.c.id)
            if sweep_id is not None:
                stmt = stmt.where(CELLS.c.sweep_id == sweep_id)
            rows = conn.execute(stmt).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=["sweep", *CELL_COLUMNS])

    # ------------------------------------------------------------------ frames

    def trials_frame(
        self,
        sweep: str | None = None,
        *,
        workload: _frames.Filter = None,
        optimizer: _frames.Filter = None,
        scheduler: _frames.Filter = None,
        regularizer: _frames.Filter = None,
        status: _frames.Filter = None,
        role: _frames.Filter = None,
        seed: _frames.IntFilter = None,
    ) -> pd.DataFrame:
        """One row per trial (of one sweep, or of all), filtered in SQL.

        Each filter is a value or a list of values. Columns: ``TRIALS_FRAME_COLUMNS``;
        ``params`` holds dicts, timestamps are UTC, nullable integers use ``Int64``.

        Raises:
            StoreError: ``sweep`` names no sweep.
        """
        filters = _axis_filters(workload, optimizer, scheduler, regularizer, status, role, seed)
        with self._reading() as conn:
            sweep_id = self._sweep_id_or_error(conn, sweep)
            return _frames.trials_frame(conn, sweep_id, filters)

    def curves_frame(
        self,
        sweep: str | None = None,
        *,
        trial_ids: Iterable[int] | None = None,
        names: _frames.Filter = None,
        scope: _frames.Filter = None,
        workload: _frames.Filter = None,
        optimizer: _frames.Filter = None,
        scheduler: _frames.Filter = None,
        regularizer: _frames.Filter = None,
        status: _frames.Filter = None,
        role: _frames.Filter = None,
        seed: _frames.IntFilter = None,
    ) -> pd.DataFrame:
        """Metric points in long format, one joined query ordered by trial, name, scope, step.

        Columns: ``CURVES_FRAME_COLUMNS``; ``value`` is a float with NaN/inf restored.

        Raises:
            StoreError: ``sweep`` names no sweep.
        """
        filters = _axis_filters(workload, optimizer, scheduler, regularizer, status, role, seed)
        _check_filter(scope, SCOPES, "scope")
        with self._reading() as conn:
            sweep_id = self._sweep_id_or_error(conn, sweep)
            return _frames.curves_frame(
                conn,
                sweep_id,
                filters,
                trial_ids=None if trial_ids is None else list(trial_ids),
                names=names,
                scope=scope,
            )

    # ------------------------------------------------------------------ internals

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction.

        SQLite's "database is locked" that comes back early (it refuses some lock upgrades at
        once) is retried while less than half the busy timeout has passed; otherwise another
        process holds the lock, and it becomes ``DatabaseLockedError``: a write gives up
        within 1.5 busy timeouts, never one timeout per retry. Errors
        about the database itself (read-only, unavailable) become one-line ``StoreError``s;
        the transaction is rolled back, so nothing of ``fn`` is written.
        """
        start = time.monotonic()
        for attempt in range(_LOCK_RETRIES):
            try:
                with self._writer.begin() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if not is_database_error(exc):
                    raise
                waited = time.monotonic() - start
                if (attempt == _LOCK_RETRIES - 1 or not is_locked_error(exc)
                        or waited >= self._busy_timeout / 2):
                    raise database_error(exc, self.url, waited) from exc
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read connection whose database-level errors are one-line ``StoreError``s."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            if not is_database_error(exc):
                raise
            raise database_error(exc, self.url) from exc

    def _sweep_by(self, column: str, value: object) -> SweepInfo | None:
        with self._reading() as conn:
            row = conn.execute(select(SWEEPS).where(SWEEPS.c[column] == value)).mappings().first()
            if row is None:
                return None
            return _sweep_info(row, _status_counts(conn, row["id"]))

    @staticmethod
    def _require_sweep_id(conn: Connection, sweep_id: int) -> None:
        if conn.scalar(select(SWEEPS.c.id).where(SWEEPS.c.id == sweep_id)) is None:
            raise StoreError(f"unknown sweep id {sweep_id}")

    @staticmethod
    def _sweep_id_or_error(conn: Connection, name: str | None) -> int | None:
        if name is None:
            return None
        sweep_id = conn.scalar(select(SWEEPS.c.id).where(SWEEPS.c.name == name))
        if sweep_id is None:
            known = list(conn.scalars(select(SWEEPS.c.name).order_by(SWEEPS.c.name)))
            raise StoreError(f"unknown sweep {name!r}; known: {_known_list(name, known)}")
        return int(sweep_id)


def _axis_filters(
    workload: _frames.Filter,
    optimizer: _frames.Filter,
    scheduler: _frames.Filter,
    regularizer: _frames.Filter,
    status: _frames.Filter,
    role: _frames.Filter,
    seed: _frames.IntFilter,
) -> _frames.AxisFilters:
    """Frame filters, with the closed vocabularies (status, role) checked for typos."""
    _check_filter(status, TRIAL_STATUSES, "status")
    _check_filter(role, ROLES, "role")
    return _frames.AxisFilters(workload, optimizer, scheduler, regularizer, status, role, seed)


def _check_filter(value: _frames.Filter, valid: Sequence[str], what: str) -> None:
    """A misspelt status in a filter is an error, not a silently empty frame."""
    values = [value] if isinstance(value, str) else list(value or ())
    bad = [v for v in values if v not in valid]
    if bad:
        raise StoreError(f"invalid {what} {bad[0]!r} in filter; valid: {', '.join(valid)}")


def _reopen(url: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT_S) -> Store:
    """Unpickle a ``Store``: the schema was upgraded by whoever pickled it."""
    return Store(url, upgrade=False, busy_timeout=busy_timeout)


def _require_file(url: str) -> None:
    """A SQLite database that is not there is reported, never created (``create=False``)."""
    path = sqlite_file(url)
    if path is None:
        if url.startswith("sqlite"):
            raise NoDatabaseError("an in-memory SQLite database has no bench schema")
        return
    if not path.is_file():
        raise NoDatabaseError(
            f"database file {str(path)[:300]} does not exist (check --db / $BENCH_DB_URL; "
            "`bench run SPEC` creates it)"
        )


def _trial_row(sweep_id: int, t: NewTrial, now: Any) -> dict[str, Any]:
    return {
        "sweep_id": sweep_id,
        "trial_hash": t.trial_hash,
        "cell_key": t.cell_key,
        "workload": t.workload,
        "optimizer": t.optimizer,
        "scheduler": t.scheduler,
        "regularizer": t.regularizer,
        "seed": t.seed,
        "role": t.role,
        "number": t.number,
        "config": dict(t.config),
        "params": dict(t.params),
        "status": "pending",
        "attempt": 0,
        "created_at": now,
    }


_START_KEYS = frozenset({"host", "device", "versions", "started_at"})


def _start_attempt(
    conn: Connection,
    trial_id: int,
    host: str | None = None,
    device: str | None = None,
    versions: Mapping[str, Any] | None = None,
    started_at: datetime | None = None,
) -> int:
    """``start_trial``'s writes, inside the caller's transaction; returns the attempt."""
    now = utcnow()
    values: dict[str, Any] = dict.fromkeys(_RESULT_COLUMNS)
    values.update(
        status="running",
        attempt=TRIALS.c.attempt + 1,
        host=host,
        device=device,
        versions=dict(versions) if versions is not None else None,
        started_at=started_at or now,
        heartbeat_at=now,
    )
    result = conn.execute(update(TRIALS).where(TRIALS.c.id == trial_id).values(values))
    if result.rowcount == 0:
        raise StoreError(f"unknown trial id {trial_id}")
    conn.execute(delete(METRICS).where(METRICS.c.trial_id == trial_id))
    attempt = conn.scalar(select(TRIALS.c.attempt).where(TRIALS.c.id == trial_id))
    return int(cast(int, attempt))


def _metric_row(trial_id: int, p: MetricPoint) -> dict[str, Any]:
    value = float(p.value)
    special = special_of(value)
    return {
        "trial_id": trial_id,
        "name": p.name,
        "scope": p.scope,
        "step": int(p.step),
        "epoch": int(p.epoch),
        "wall_time": float(p.wall_time),
        "value": None if special else value,
        "special": special,
    }


def _trial_info(row: RowMapping) -> TrialInfo:
    return TrialInfo(**{name: row[name] for name in _TRIAL_FIELDS})


def _sweep_info(row: RowMapping, counts: dict[str, int]) -> SweepInfo:
    return SweepInfo(**{name: row[name] for name in _SWEEP_FIELDS}, counts=counts)


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(TRIAL_STATUSES, 0)


def _status_counts(conn: Connection, sweep_id: int) -> dict[str, int]:
    counts = _zero_counts()
    rows = conn.execute(
        select(TRIALS.c.status, func.count())
        .where(TRIALS.c.sweep_id == sweep_id)
        .group_by(TRIALS.c.status)
    )
    for status, n in rows:
        counts[status] = int(n)
    return counts


def _check_status(status: object, valid: Iterable[str], what: str) -> None:
    allowed = set(valid)
    if status not in allowed:
        order = [s for s in dict.fromkeys(TRIAL_STATUSES + SWEEP_STATUSES) if s in allowed]
        raise StoreError(f"invalid {what} status {status!r}; valid: {', '.join(order)}")


def _violates(exc: IntegrityError, *needles: str) -> bool:
    text = str(exc.orig)
    return any(n in text for n in needles)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _known_list(name: str, known: list[str], limit: int = 20) -> str:
    """Known names, the closest to ``name`` first, cut at ``limit``."""
    if not known:
        return "(none)"
    import difflib

    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    ordered = close + [k for k in known if k not in close]
    shown = ", ".join(repr(k) for k in ordered[:limit])
    return shown + (f", ... ({len(known)} in all)" if len(known) > limit else "")


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
