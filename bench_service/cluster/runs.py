"""What the driver needs of a sweep kind (grid, tuned): register, tell if anything is left,
hand the loop a trial source, report the end. ``driver.execute_sweep`` is the one skeleton
both kinds run through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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
    """Whether a SQLite results file says the sweep of ``spec_path`` already ran to its end.

    A look costing milliseconds (Python's own ``sqlite3``: no planning, no torch, Ray,
    SQLAlchemy or migrations) for ``bench run`` to decide whether starting Ray early is
    worth it: a no-op resume then never starts Ray. A wrong guess costs only that head start,
    either way. Anything else (a server database, no file yet, an unreadable spec, another
    schema) says ``False`` and the driver decides as always (it too starts Ray only when
    something is left to run).

    A grid is finished when its row says ``completed`` and no trial is left to run; a tuned
    sweep when it says ``completed`` (replaced tuning trials stay ``cancelled`` in a finished
    one; the driver's own check, ``TunedRun.nothing_left``, decides).
    """
    try:
        import json
        import os
        import sqlite3

        from bench_service.sweep.yaml_io import parse_yaml, read_spec_file
        from bench_service.vocab import RUNNABLE_STATUSES

        path = _sqlite_file(db or os.environ.get("BENCH_DB_URL", "").strip() or "bench.db")
        if path is None or not path.is_file():
            return False
        raw = parse_yaml(read_spec_file(Path(spec_path)))
        sweep_name = name or (raw.get("name") if isinstance(raw, dict) else None)
        if not isinstance(sweep_name, str):
            return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT id, status, spec FROM bench_sweeps WHERE name = ?",
                               (sweep_name,)).fetchone()
            if row is None or row[1] != "completed":
                return False
            if json.loads(row[2]).get("tuning"):
                return True
            marks = ", ".join("?" for _ in RUNNABLE_STATUSES)
            left = conn.execute(
                f"SELECT count(*) FROM bench_trials WHERE sweep_id = ? AND status IN ({marks})",
                (row[0], *RUNNABLE_STATUSES)).fetchone()[0]
            return int(left) == 0
        finally:
            conn.close()
    except Exception:
        return False


def _sqlite_file(url: str) -> Path | None:
    """The file of a bare path or ``sqlite:///`` URL (as ``store.resolve_url`` reads them),
    else ``None``."""
    if "://" not in url:
        return None if url == ":memory:" else Path(url).expanduser()
    if url.startswith("sqlite:///") and "?" not in url:
        return Path(url[len("sqlite:///"):]).expanduser()
    return None
