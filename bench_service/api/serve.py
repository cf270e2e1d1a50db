"""``bench serve``: the HTTP API on uvicorn, over one database and one Ray cluster.

Without ``--ray-address`` an embedded local head is started and owned (``api.ray_head``);
with one, jobs go to that cluster's job server. Either way the API talks to Ray only through
``JobSubmissionClient`` (``api.jobs``). The server refuses a non-loopback bind unless tokens
are configured, so an open port never accepts anonymous writes.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
from typing import TextIO

from bench_service.engine.errors import ConfigError

#: Environment variable: most trials per submitted sweep (default ``DEFAULT_API_MAX_TRIALS``).
MAX_TRIALS_ENV = "BENCH_API_MAX_TRIALS"
#: Environment variable: the command that runs Python on a remote cluster's head (default
#: ``python``; the embedded head uses this interpreter).
JOB_PYTHON_ENV = "BENCH_JOB_PYTHON"


class ServeError(ConfigError):
    """A ``bench serve`` option cannot be used (one line, exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)

    def __str__(self) -> str:
        return self.message


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(*, db: str | None, ray_address: str | None, host: str, port: int,
          tokens_file: str | None, public_read: bool, max_trials: int | None,
          num_cpus: int | None, out: TextIO = sys.stderr) -> int:
    """Run the service until SIGINT/SIGTERM; returns the exit code."""
    from bench_service.api.auth import TokenConfigError, Tokens
    from bench_service.api.submit import DEFAULT_API_MAX_TRIALS

    if not 0 < port < 65536:
        raise ServeError(f"--port must be 1-65535, got {port}")
    try:
        tokens = Tokens.load(tokens_file)
    except TokenConfigError as exc:
        raise ServeError(str(exc)) from None
    if not is_loopback(host) and not tokens.configured:
        raise ServeError(
            f"refusing to listen on {host}, beyond this machine, without tokens: give a tokens "
            "file (--tokens FILE or $BENCH_API_TOKENS_FILE) or $BENCH_API_TOKENS, or bind "
            "--host 127.0.0.1")
    limit = max_trials or _env_int(MAX_TRIALS_ENV) or DEFAULT_API_MAX_TRIALS
    from bench_service.store import Store, mask_url, resolve_url

    url = resolve_url(db)
    import uvicorn

    from bench_service.api.app import ServiceConfig, create_app
    from bench_service.api.jobs import JobRunner
    from bench_service.api.ray_head import STOP_WAIT_S, EmbeddedHead, start_head

    head: EmbeddedHead | None = None
    runner: JobRunner | None = None
    if ray_address is not None:  # before anything is created: an unreachable cluster is
        if "://" not in ray_address:  # one line, and no database appears
            ray_address = f"http://{ray_address}"
        runner = JobRunner(ray_address, url, python=os.environ.get(JOB_PYTHON_ENV, "python"))
        try:
            runner.client  # noqa: B018  (connects)
        except Exception as exc:
            raise ServeError(f"cannot reach the Ray job server at {ray_address}: {exc}; is "
                             "the head's dashboard up, and is $RAY_AUTH_TOKEN its token?"
                             ) from None
    store = Store(url)
    try:
        store.check_writable()
        if runner is None:
            print("bench serve: starting an embedded Ray head ...", file=out, flush=True)
            try:
                head = start_head(num_cpus=num_cpus)
            except RuntimeError as exc:
                raise ServeError(str(exc)) from None
            runner = JobRunner(head.dashboard_url, store.url, python=sys.executable)
    except BaseException:
        store.close()
        raise
    try:
        app = create_app(ServiceConfig(
            store=store, runner=runner, tokens=tokens, public_read=public_read,
            max_trials=limit, embedded=head is not None, stop_wait=STOP_WAIT_S + 10))
        runner.start_polling(store)
        print(f"bench serve: http://{host}:{port} (docs at /docs), database "
              f"{mask_url(store.url)}, Ray {runner.address}"
              f"{f' (embedded head, logs in {head.temp_dir})' if head else ''}, "
              f"{'tokens required for writes' if tokens.configured else 'no tokens: local use'}"
              f"{', public reads' if public_read else ''}", file=out, flush=True)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal into the
        # handlers it found: ours end the run here, so the cleanup below always happens.
        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                        timeout_graceful_shutdown=5)
        except _Stopped:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        runner.close()
        if head is not None:
            head.stop()
        store.close()
    return 0


class _Stopped(Exception):
    """SIGINT/SIGTERM after uvicorn's graceful shutdown."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ServeError(f"${name} must be a positive integer, got {raw[:40]!r}")
    return value
