"""The service's commands: ``bench serve``, ``submit``, ``status``, ``logs``, ``cancel``, the
``--api`` reads of ``bench sweeps``/``results``, and ``bench run --sweep NAME`` (what a
service job runs). ``cli.py`` holds only their parser lines and handler entries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_service.engine.errors import ConfigError


class ServiceCliError(ConfigError):
    """A user error of a service command (one line, exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


def api_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="URL", default=None,
                   help="the service (bench serve) to talk to (default: $BENCH_API_URL or "
                        "http://127.0.0.1:8000); token from $BENCH_API_TOKEN")


def add_parsers(sub: Any) -> None:
    """The service's subcommands (``bench serve``, ``submit``, ``status``, ``logs``,
    ``cancel``)."""
    serve = sub.add_parser("serve", help="run the HTTP service: sweeps submitted to it run "
                                         "as Ray Jobs")
    serve.add_argument("--db", metavar="URL", default=None,
                       help="database URL or SQLite file (default: $BENCH_DB_URL or ./bench.db)")
    serve.add_argument("--ray-address", metavar="URL", default=None,
                       help="the Ray cluster's job server, http://HEAD:8265 (default: start "
                            "and own an embedded local Ray head)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; any other needs tokens)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--tokens", metavar="FILE", default=None,
                       help="tokens file: USER=TOKEN or USER:admin=sha256:HEX per line "
                            "(default: $BENCH_API_TOKENS_FILE; also $BENCH_API_TOKENS)")
    serve.add_argument("--public-read", action="store_true",
                       help="reads need no token (writes always do, once tokens exist)")
    serve.add_argument("--max-trials", type=int, default=None,
                       help="most trials one submitted sweep may have (default: "
                            "$BENCH_API_MAX_TRIALS or 10,000)")
    serve.add_argument("--num-cpus", type=int, default=None,
                       help="CPUs of the embedded Ray head (default: all)")

    submit = sub.add_parser("submit", help="submit a sweep spec to the service; returns at once")
    submit.add_argument("spec", help="path to the sweep spec (YAML)")
    api_arg(submit)

    status = sub.add_parser("status", help="a submitted sweep's job state and progress")
    status.add_argument("name", help="sweep name")
    api_arg(status)

    logs = sub.add_parser("logs", help="the log of a submitted sweep's Ray Job")
    logs.add_argument("name", help="sweep name")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing until the job ends")
    logs.add_argument("--tail", type=int, default=None, help="only the last N lines")
    api_arg(logs)

    cancel = sub.add_parser("cancel", help="stop a submitted sweep's job (its unfinished "
                                           "trials become cancelled)")
    cancel.add_argument("name", help="sweep name")
    api_arg(cancel)


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    _need("httpx")
    from bench_service.client import ApiError, Client

    client = Client(getattr(args, "api", None))
    try:
        yield client
    except ApiError as exc:
        raise ServiceCliError(f"{exc} (HTTP {exc.status} from {client.url})") from None
    except ConnectionError as exc:
        raise ServiceCliError(f"{exc}; is `bench serve` running there? (--api URL)") from None
    finally:
        client.close()


def _need(*modules: str) -> None:
    """A missing optional dependency is one line naming the extra, not a traceback."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ServiceCliError(f"this command needs {', '.join(missing)}: pip install "
                              "'bench-service[service]'")


def cmd_serve(args: argparse.Namespace) -> int:
    _need("fastapi", "uvicorn")
    from bench_service.api.serve import serve

    return serve(db=args.db, ray_address=args.ray_address, host=args.host, port=args.port,
                 tokens_file=args.tokens, public_read=args.public_read,
                 max_trials=args.max_trials, num_cpus=args.num_cpus)


def cmd_submit(args: argparse.Namespace) -> int:
    path = Path(args.spec)
    if not path.is_file():
        raise ServiceCliError(f"spec file {args.spec[:300]} does not exist")
    with _client(args) as client:
        out = client.submit(path)
    verb = "resumed" if out["resumed"] else "submitted"
    print(f"{verb} sweep {out['name']} as Ray Job {out['job_id']} ({out['state']}, "
          f"{out['n_trials']} trials)")
    print(f"follow it: bench status {out['name']} / bench logs {out['name']} --follow")
    return 0


_STATUS_FIELDS = ("name", "state", "status", "submitter", "job_id", "progress", "counts",
                  "job_submitted_at", "job_started_at", "job_finished_at", "job_message",
                  "description")


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        s = client.sweep(args.name)
    s["progress"] = f"{s['done']}/{s['n_trials']}"
    s["counts"] = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v) or "(no trials)"
    width = max(len(k) for k in _STATUS_FIELDS)
    for key in _STATUS_FIELDS:
        if s.get(key) is not None:
            print(f"{key + ':':<{width + 2}}{s[key]}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            for chunk in client.follow_logs(args.name, tail=args.tail):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            sys.stdout.write(client.logs(args.name, tail=args.tail))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        out = client.cancel(args.name)
    print(f"cancelled sweep {out['name']} (Ray Job {out['job_id']}): "
          f"{out['cancelled_trials']} trial(s) cancelled; `bench submit` the spec again to "
          "resume it")
    return 0


# --- bench sweeps / results --api ----------------------------------------------------------
def api_sweeps(args: argparse.Namespace) -> list[Any]:
    """``bench sweeps --api``: the service's sweeps as ``SweepInfo`` (what the table needs)."""
    from bench_service.store import SweepInfo

    with _client(args) as client:
        items = client.sweeps() if args.name is None else [client.sweep(args.name)]
    return [SweepInfo(id=0, name=s["name"], spec=s.get("spec") or {}, spec_hash=s["spec_hash"],
                      status=s["status"], n_trials=s["n_trials"],
                      created_at=_when(s["created_at"]), started_at=_when(s["started_at"]),
                      finished_at=_when(s["finished_at"]), description=s["description"],
                      counts=s["counts"], submitter=s["submitter"], job_id=s["job_id"],
                      job_state=s["state"]) for s in items]


def api_results(args: argparse.Namespace, filters: dict[str, list[str]]) -> Any:
    """``bench results --api``: the same frames as from the database."""
    with _client(args) as client:
        if args.best:
            return client.best(args.sweep, **filters)
        if args.curves:
            return client.curves(args.sweep, names=args.metric, **filters)
        return client.trials(args.sweep, **filters)


def _when(text: str | None) -> Any:
    return datetime.fromisoformat(text) if text else None


# --- bench run --sweep NAME ------------------------------------------------------------------
def run_stored(args: argparse.Namespace) -> int:
    """``bench run --sweep NAME``: run (or resume) a sweep whose spec is in the database, as a
    service job does; nothing but the name is given."""
    from bench_service.cluster.driver import execute_sweep
    from bench_service.store import Store, check_optuna_schema, mask_url
    from bench_service.sweep import parse_spec, plan_sweep

    if args.spec is not None or args.name:
        raise ServiceCliError("--sweep NAME runs the stored spec: give no SPEC and no --name")
    store = Store(args.db)
    sweep = store.get_sweep(args.sweep)
    if sweep is None:
        raise ServiceCliError(f"unknown sweep {args.sweep[:200]!r} in {mask_url(store.url)}: "
                              "`bench submit` or `bench run SPEC` stores one first")
    plan = plan_sweep(parse_spec(sweep.spec))
    if plan.spec_hash != sweep.spec_hash:
        raise ServiceCliError(f"the stored spec of sweep {sweep.name!r} plans differently with "
                              "this bench version; run it with the bench that stored it")
    store.check_writable()
    if plan.spec.tuning is not None:
        check_optuna_schema(store.url)
    return execute_sweep(plan, store, address=args.address, num_cpus=args.num_cpus,
                         progress=not args.no_progress, out=sys.stdout,
                         wait_if_busy=args.wait_if_busy)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve, "submit": cmd_submit, "status": cmd_status, "logs": cmd_logs,
    "cancel": cmd_cancel,
}
