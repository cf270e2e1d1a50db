"""``bench dashboard``: start the Streamlit dashboard on a results database.

The app itself lives in ``dashboard/`` at the repository root (next to this package), so it
is found through the package's location; a wheel install does not ship it, and the command
then says so instead of failing inside Streamlit.

The database URL reaches the app through ``$BENCH_DB_URL`` in the child's environment, not
on its command line, where a PostgreSQL password would be visible to every local user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import bench_service
from bench_service.store.db import ENV_VAR, make_engine, mask_url, resolve_url

#: Exit code for a usage problem (the CLI's convention).
EXIT_USAGE = 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def app_path() -> Path | None:
    """``<repo>/dashboard/app.py`` if this package sits in a checkout that has it."""
    candidate = Path(bench_service.__file__).resolve().parent.parent / "dashboard" / "app.py"
    return candidate if candidate.is_file() else None


def streamlit_command(app: Path, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line (without the database, see the module docstring).

    Headless (no browser is opened on a server), no usage statistics, no developer toolbar
    (``viewer`` mode: no "Deploy"/"Rerun" menu for people who only read results) and no file
    watcher: a results viewer has no reason to watch the source tree (and inotify limits
    are easy to hit on shared machines).
    """
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--browser.gatherUsageStats", "false",
    ]


def launch(
    db: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    extra_args: Sequence[str] = (),
) -> int:
    """Run the dashboard in the foreground until it stops; returns the exit code.

    Args:
        db: Database URL or SQLite file; ``None`` uses ``$BENCH_DB_URL``, then ``./bench.db``.
        host: Address to bind; ``127.0.0.1`` keeps the results on this machine.
        port: TCP port.
        extra_args: More ``streamlit run`` options (e.g. ``--theme.base dark``).

    Returns:
        Streamlit's exit code; 0 after Ctrl-C; 2 when the app or Streamlit is missing or
        the arguments are bad.

    Raises:
        StoreError: A malformed database URL or a missing driver (the CLI exits 2 with it);
            an unreachable database is reported by the app itself, which keeps running.
    """
    app = app_path()
    if app is None:
        print(
            "bench: error: the dashboard app (dashboard/app.py) was not found next to the "
            f"bench_service package ({Path(bench_service.__file__).resolve().parent}); it "
            "ships with the source checkout: install with `pip install -e '.[dashboard]'` "
            "from the repository, or run `streamlit run <repo>/dashboard/app.py -- --db URL`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        print("bench: error: the dashboard needs Streamlit and Plotly: "
              "pip install 'bench-service[dashboard]'", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < port < 65536:
        print(f"bench: error: --port must be between 1 and 65535, got {port}", file=sys.stderr)
        return EXIT_USAGE
    url = resolve_url(db)
    make_engine(url).dispose()  # a malformed URL or a missing driver: StoreError, exit 2 now
    env = dict(os.environ)
    env[ENV_VAR] = url
    cmd = [*streamlit_command(app, host, port), *extra_args]
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(f"bench dashboard: {mask_url(url)} on http://{shown}:{port}  (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    # `kill PID` stops the server as Ctrl-C does (handlers can only be set in the main thread).
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches Streamlit too; a signal sent to this process alone
        # does not, so pass it on, and give Streamlit a moment to shut down cleanly.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
