"""``bench dashboard``: start the Streamlit dashboard on a results database.

The app ships inside the package (``bench_service/dashboard/app.py``), so a wheel install
has a working dashboard; it is found next to this module, without importing Streamlit.

The database URL and the access token reach the app through the child's environment
(``$BENCH_DB_URL``, ``$BENCH_DASHBOARD_TOKEN``), not its command line, where a password or a
token would be visible to every local user (``ps``). Streamlit has no authentication of its
own, so a dashboard bound beyond loopback must have a token (``--token`` or
``$BENCH_DASHBOARD_TOKEN``), or sit behind a reverse proxy that authenticates and forwards
to a loopback-bound dashboard (``docs/dashboard.md``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from bench_service.store.db import ENV_VAR, make_engine, mask_url, resolve_url

#: Exit code for a usage problem (the CLI's convention).
EXIT_USAGE = 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
#: Environment variable of the access token (read by the app: ``dashboard.auth``).
TOKEN_ENV = "BENCH_DASHBOARD_TOKEN"
#: Shortest token accepted: a guessable token is no protection.
MIN_TOKEN_LENGTH = 16


def app_path() -> Path | None:
    """``bench_service/dashboard/app.py`` (``None`` only in a broken install)."""
    spec = importlib.util.find_spec("bench_service.dashboard")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).resolve().parent / "app.py"
    return candidate if candidate.is_file() else None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine (127.0.0.0/8, ::1,
    ``localhost``); a name is resolved, and counts as loopback only if all its addresses are."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def display_url(host: str, port: int) -> str:
    """The address the server really listens on, as a URL (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _where(host: str, port: int) -> str:
    url = display_url(host, port)
    if host in ("0.0.0.0", "::"):
        return (f"{url} (every interface: reach it as http://{socket.gethostname()}:{port} "
                "or by this machine's address)")
    return url


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (``None`` otherwise, and for other
    databases, in-memory ones and ``file:`` URIs)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:") or parsed.query.get("uri"):
        return None
    path = Path(database)
    return None if path.exists() else path


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


def _error(message: str) -> int:
    print(f"bench: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def launch(
    db: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    extra_args: Sequence[str] = (),
) -> int:
    """Run the dashboard in the foreground until it stops; returns the exit code.

    Args:
        db: Database URL or SQLite file; ``None`` uses ``$BENCH_DB_URL``, then ``./bench.db``.
        host: Address to bind; ``127.0.0.1`` keeps the results on this machine.
        port: TCP port.
        token: Access token the app demands (``?token=`` once per browser session);
            ``None`` uses ``$BENCH_DASHBOARD_TOKEN``. Required when ``host`` is not loopback.
        extra_args: More ``streamlit run`` options (e.g. ``--theme.base dark``).

    Returns:
        Streamlit's exit code; 0 after Ctrl-C; 2 when the app or Streamlit is missing or
        the arguments are bad (a non-loopback host without a token among them).

    Raises:
        StoreError: A malformed database URL or a missing driver (the CLI exits 2 with it);
            an unreachable database is reported by the app itself, which keeps running.
    """
    app = app_path()
    if app is None:
        return _error("the dashboard app (bench_service/dashboard/app.py) is missing from "
                      "this installation; reinstall with `pip install 'bench-service[dashboard]'`")
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        return _error("the dashboard needs Streamlit and Plotly: "
                      "pip install 'bench-service[dashboard]'")
    if not 0 < port < 65536:
        return _error(f"--port must be between 1 and 65535, got {port}")
    token = (token if token is not None else os.environ.get(TOKEN_ENV, "")).strip() or None
    if token is None and not is_loopback(host):
        return _error(
            f"--host {host[:80]} makes the dashboard reachable from other machines, and it has "
            f"no login of its own: give an access token (--token or ${TOKEN_ENV}, at least "
            f"{MIN_TOKEN_LENGTH} characters), or bind 127.0.0.1 behind an authenticating "
            "reverse proxy (docs/dashboard.md)")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        return _error(f"the access token must be at least {MIN_TOKEN_LENGTH} characters "
                      f"(got {len(token)}); e.g. `python -c 'import secrets; "
                      "print(secrets.token_urlsafe())'`")
    url = resolve_url(db)
    make_engine(url).dispose()  # a malformed URL or a missing driver: StoreError, exit 2 now
    missing = _missing_sqlite_file(url)
    if missing is not None:  # a viewer never creates a database (a typo would look empty)
        return _error(f"the database file {str(missing)[:200]} does not exist; "
                      "`bench run SPEC --db ...` creates it")
    env = dict(os.environ)
    env[ENV_VAR] = url
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    cmd = [*streamlit_command(app, host, port), *extra_args]
    login = "  (open it with ?token=<your token>)" if token is not None else ""
    print(f"bench dashboard: {mask_url(url)} on {_where(host, port)}{login}  (Ctrl-C to stop)",
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
