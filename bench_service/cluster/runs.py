"""What the driver needs of a sweep kind (grid, tuned): register, tell if anything is left,
hand the loop a trial source, report the end. ``driver.execute_sweep`` is the one skeleton
both kinds run through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bench_service.cluster.loop import SweepOutcome, TrialSource
    from bench_service.store import Store, SweepInfo

#: Prints one line for the user (or nothing, for a quiet caller).
Say = Callable[[str], None]


class SweepRun(Protocol):
    """One kind of sweep as the driver runs it."""

    def register(self) -> SweepInfo:
        """Create the sweep in the store, or find it to resume; say how big it is."""
        ...

    def nothing_left(self) -> bool:
        """Whether the stored rows show the sweep finished (then Ray is never started);
        says so if it is."""
        ...

    def source(self, capacity: int) -> TrialSource:
        """The loop's source of trials, for a cluster that runs ``capacity`` at once."""
        ...

    def report(self, outcome: SweepOutcome, store: Store) -> int:
        """Say how the finished sweep went; returns the exit code."""
        ...


def db_flag(url: str) -> str:
    """`` --db URL`` for follow-up commands, or nothing when ``url`` is the default."""
    from bench_service.store import mask_url, resolve_url

    return "" if url == resolve_url(None) else f" --db {mask_url(url)}"


def size_note(plan: object) -> str:
    """``, 12,000 steps`` when the plan knows its total optimizer steps, else nothing."""
    steps = getattr(plan, "total_steps", None)
    return f", {steps:,} steps" if isinstance(steps, int) else ""


def probably_finished(spec_path: str, db: str | None, name: str | None = None) -> bool:
    """Whether the results database says the sweep of ``spec_path`` already ran to its end.

    A cheap look (no planning, no torch, Ray, pandas or migrations: two plain SQL queries,
    through Python's own ``sqlite3`` for a SQLite file) for ``bench run`` to decide whether
    starting Ray early is worth it: a no-op resume then never starts Ray. A wrong guess
    costs only that head start, either way. Anything unexpected (no database yet, an
    unreadable spec, another schema) says ``False`` and the driver decides as always (it too
    starts Ray only when something is left to run).

    A grid is finished when its row says ``completed`` and no trial is left to run; a tuned
    sweep when it says ``completed`` (replaced tuning trials stay ``cancelled`` in a finished
    one; the driver's own check, ``TunedRun.nothing_left``, decides).
    """
    import os

    try:
        from bench_service.sweep.yaml_io import parse_yaml, read_spec_file

        url = db or os.environ.get("BENCH_DB_URL", "").strip() or "bench.db"
        path = _sqlite_file(url)
        if (path is None and not url.startswith("postgresql")) or (
                path is not None and not path.is_file()):
            return False
        raw = parse_yaml(read_spec_file(Path(spec_path)))
        sweep_name = name or (raw.get("name") if isinstance(raw, dict) else None)
        if not isinstance(sweep_name, str):
            return False
        if path is not None:
            import sqlite3

            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return _finished(conn.execute, sweep_name)
            finally:
                conn.close()
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as sa_conn:
                return _finished(lambda sql, params: sa_conn.execute(sa.text(sql), params),
                                 sweep_name)
        finally:
            engine.dispose()
    except Exception:
        return False


def _finished(execute: Callable[[str, dict[str, object]], Any], sweep_name: str) -> bool:
    """The two queries, with named parameters (both ``sqlite3`` and SQLAlchemy read them)."""
    import json

    from bench_service.vocab import RUNNABLE_STATUSES

    row = execute("SELECT id, status, spec FROM bench_sweeps WHERE name = :name",
                  {"name": sweep_name}).fetchone()
    if row is None or row[1] != "completed":
        return False
    spec = row[2] if isinstance(row[2], dict) else json.loads(row[2])
    if spec.get("tuning"):
        return True
    statuses = {f"s{i}": s for i, s in enumerate(RUNNABLE_STATUSES)}
    left = execute("SELECT count(*) FROM bench_trials WHERE sweep_id = :id AND status IN ("
                   + ", ".join(f":{k}" for k in statuses) + ")",
                   {"id": row[0], **statuses}).fetchone()[0]
    return int(left) == 0


def _sqlite_file(url: str) -> Path | None:
    """The file of a bare path or ``sqlite:///`` URL (as ``store.resolve_url`` reads them),
    else ``None``."""
    if "://" not in url:
        return None if url == ":memory:" else Path(url).expanduser()
    if url.startswith("sqlite:///") and "?" not in url:
        return Path(url[len("sqlite:///"):]).expanduser()
    return None
