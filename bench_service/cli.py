"""The ``bench`` command: run sweeps, list them, query their results, manage the database."""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_service.engine.errors import ConfigError
from bench_service.vocab import AXES, SPEC_AXES, TRIAL_FINISHED, TRIAL_STATUSES, TUNED_SPEC_AXES

EXIT_OK, EXIT_FAILED_TRIALS, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


#: ``bench results`` filters: the grid axes, then the trial's status and role.
_FILTERS: tuple[str, ...] = (*AXES, "status", "role")
#: ``bench list`` axes, in the order they are printed.
_LIST_AXES: tuple[str, ...] = (*TUNED_SPEC_AXES, SPEC_AXES[0])


def version() -> str:
    """The installed distribution's version, else the package's own (a source checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("bench-service")
    except PackageNotFoundError:
        from bench_service import __version__

        return __version__


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="database URL or SQLite file (default: $BENCH_DB_URL or ./bench.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Benchmark optimizers, LR schedules and regularizers; results in SQL.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run (or resume) the sweep described by a YAML spec")
    run.add_argument("spec", nargs="?", default=None, help="path to the sweep spec (YAML)")
    run.add_argument("--sweep", default=None, metavar="NAME",
                     help="instead of SPEC: run (or resume) the sweep stored under NAME in "
                          "the database (what a `bench serve` job runs)")
    _db_arg(run)
    run.add_argument("--address", default=None,
                     help="Ray cluster to use (e.g. 127.0.0.1:6380, ray://...); default: "
                          "$RAY_ADDRESS or an embedded local Ray started for this run")
    run.add_argument("--name", default=None,
                     help="run the spec as a sweep of this name (a new sweep when the spec "
                          "changed under its own name)")
    run.add_argument("--num-cpus", type=int, default=None,
                     help="CPUs of the embedded local Ray (default: all)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--wait-if-busy", action="store_true",
                     help="if another driver is running this sweep, wait for it to end, then "
                          "resume what is left (default: exit 2 naming that driver)")

    sweeps = sub.add_parser("sweeps", help="list sweeps with their progress")
    sweeps.add_argument("name", nargs="?", default=None,
                        help="show this sweep only, every field in full")
    _db_arg(sweeps)
    sweeps.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sweeps.add_argument("--api", metavar="URL", default=None,
                        help="read from this service (bench serve) instead of --db")

    res = sub.add_parser("results", help="print or export the trials (or curves) of a sweep")
    _db_arg(res)
    res.add_argument("--sweep", required=True, help="sweep name")
    res.add_argument("--api", metavar="URL", default=None,
                     help="read from this service (bench serve) instead of --db")
    res.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    res.add_argument("--output", "-o", default=None, help="write to this file (parquet: required)")
    res.add_argument("--curves", action="store_true",
                     help="the long-format metric points instead of one row per trial")
    res.add_argument("--metric", action="append", default=None,
                     help="with --curves: only these metric names (repeatable)")
    res.add_argument("--best", action="store_true",
                     help="per cell: best config, final-seed mean ± std and 95%% CI, rank")
    for axis in _FILTERS:
        res.add_argument(f"--{axis}", action="append", default=None,
                         help=f"only trials with this {axis} (repeatable)")

    db = sub.add_parser("db", help="database schema management")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = db_sub.add_parser("upgrade", help="create or upgrade the schema (Alembic)")
    _db_arg(up)
    cur = db_sub.add_parser("current", help="print the schema revision")
    _db_arg(cur)

    lst = sub.add_parser("list", help="list registered algorithms and workloads")
    lst.add_argument("axis", nargs="?", default="all", choices=("all", *_LIST_AXES))

    dash = sub.add_parser("dashboard", help="start the Streamlit dashboard")
    _db_arg(dash)
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--token", default=None,
                      help="access token the app asks for (?token=...); required with a "
                      "non-loopback --host (default: $BENCH_DASHBOARD_TOKEN)")
    imp = sub.add_parser("import", help="read published results (DeepOBS JSON files) into a "
                                        "sweep, as trials of role imported")
    imp.add_argument("format", choices=("deepobs",), help="file format")
    imp.add_argument("directory", help="folder searched for result files (*.json)")
    imp.add_argument("--sweep", required=True, help="sweep to add them to (created if new)")
    _db_arg(imp)
    exp = sub.add_parser("export", help="write a sweep's finished trials as result files")
    exp.add_argument("format", choices=("deepobs",), help="file format")
    exp.add_argument("--sweep", required=True, help="sweep name")
    exp.add_argument("--output", "-o", required=True, help="folder to write the files into")
    _db_arg(exp)
    from bench_service.cli_data import add_parser as add_data_parser

    add_data_parser(sub)
    from bench_service.cli_service import add_parsers

    add_parsers(sub)
    from bench_service import cli_analyze

    cli_analyze.add_parsers(sub, _db_arg)
    return parser


def main(argv: Sequence[str] | None = None, *, start_ray_early: bool = False) -> int:
    """Run one ``bench`` command; returns its exit code.

    ``start_ray_early``: for ``bench run`` on the embedded Ray (no ``--address``), start Ray
    in the background while the spec is read and the sweep planned (~2 s of a ~4 s Ray
    start-up). The console script does; in-process callers keep the default, so a refused
    spec never starts Ray in their process (on the command line it costs a refused spec the
    rest of Ray's start-up, after the error is printed).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    early = start_ray_early and _embedded_run(args)
    if early:
        from bench_service.cluster.session import start_local_ray_early

        start_local_ray_early(num_cpus=args.num_cpus)
    try:
        handler = _HANDLERS[args.command]
        return _cancel_code(handler(args))
    except (ConfigError, CliError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _store_error() as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return _cancel_code(EXIT_CANCELLED)
    finally:
        if early:  # after the error, if any, is printed
            from bench_service.cluster.session import stop_early_ray

            stop_early_ray()


def _embedded_run(args: argparse.Namespace) -> bool:
    """``bench run`` of an existing spec file on the embedded local Ray, with something left
    to run (a no-op resume never starts Ray)."""
    if not (args.command == "run" and args.spec is not None and args.address is None
            and not os.environ.get("RAY_ADDRESS") and Path(args.spec).is_file()):
        return False
    from bench_service.cluster.runs import probably_finished

    return not probably_finished(args.spec, args.db, args.name)


def _cancel_code(code: int) -> int:
    """A cancel (130) caused by SIGTERM exits 143; its handler lives in ``cluster.signals``,
    so without that module imported (no Ray started) no SIGTERM was turned into a cancel."""
    signals = sys.modules.get("bench_service.cluster.signals")
    return signals.cancel_exit_code(code) if signals is not None else code


def _store_error() -> type[Exception]:
    from bench_service.store import StoreError

    return StoreError


# --- run -------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from bench_service.cluster.driver import execute_sweep
    from bench_service.sweep import diff_specs, load_spec, plan_sweep

    if args.sweep is not None:
        from bench_service.cli_service import run_stored

        return run_stored(args)
    if args.spec is None:
        raise CliError("give a SPEC file to run, or --sweep NAME for a stored sweep")
    spec = load_spec(args.spec)
    if args.name:
        spec = spec.renamed(args.name)
    plan = plan_sweep(spec)
    from bench_service.store import Store, check_optuna_schema, mask_url

    store = Store(args.db)
    # Before anything is written or started: a read-only or locked database, or Optuna
    # tables this Optuna cannot use, is one line now rather than a traceback (and a pending
    # sweep row) later.
    store.check_writable()
    if plan.spec.tuning is not None:
        check_optuna_schema(store.url)
    existing = store.get_sweep(plan.name)
    if existing is not None and existing.spec_hash != plan.spec_hash:
        changes = diff_specs(existing.spec, plan.spec_dict)
        lines = "\n".join(f"  {c}" for c in changes) or "  (normalised spec differs)"
        raise CliError(
            f"sweep {plan.name!r} already exists in {mask_url(store.url)} with a different "
            f"spec:\n{lines}\nrun it as a new sweep with --name NEW_NAME, or restore the spec "
            "to resume the existing one"
        )
    return execute_sweep(
        plan, store, address=args.address, num_cpus=args.num_cpus,
        progress=not args.no_progress, out=sys.stdout, wait_if_busy=args.wait_if_busy,
    )


# --- sweeps / results ------------------------------------------------------------------------
def _emit(df: Any, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        if not output:
            raise CliError("--format parquet needs --output FILE")
        _write_parquet(df, output)
        print(f"wrote {len(df)} rows to {output}", file=sys.stderr)
        return
    if fmt == "csv":
        text = _json_cells(df).to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", indent=None, lines=False)
        text = json.dumps(json.loads(text), indent=1) + "\n"
    else:
        text = (_json_cells(df).to_string(index=False) if len(df) else "(no rows)") + "\n"
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {len(df)} rows to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _json_cells(df: Any) -> Any:
    """``df`` with its dict/list cells (``params``, ``final``, ``best`` ...) as JSON text, so a
    CSV or table holds ``{"lr": 0.1}`` that any JSON reader parses, not a Python repr."""
    nested = [c for c in df.columns
              if df[c].map(lambda v: isinstance(v, (dict, list, tuple))).any()]
    if not nested:
        return df
    out = df.copy()
    for c in nested:
        out[c] = df[c].map(
            lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v)
    return out


def _write_parquet(df: Any, output: str) -> None:
    """Parquet keeps nested columns native (structs) when pyarrow can type them; a column it
    cannot (keys whose values change type between rows) is written as JSON text."""
    try:
        df.to_parquet(output, index=False)
    except Exception:  # pyarrow's errors for untypable nested values vary by version
        _json_cells(df).to_parquet(output, index=False)


def cmd_sweeps(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench_service.store import Store

    if args.api:
        from bench_service.cli_service import api_sweeps

        every = api_sweeps(args)
    else:
        with Store.open_existing(args.db) as store:
            every = store.list_sweeps()
    sweeps = every if args.name is None else [s for s in every if s.name == args.name]
    if args.name is not None and not sweeps:
        raise CliError(f"unknown sweep {args.name[:200]!r} in {_where(args.db)}"
                       f"{_known(args.name, [s.name for s in every])}")
    rows = []
    for s in sweeps:
        c = s.counts
        done = sum(c.get(k, 0) for k in TRIAL_FINISHED)
        description = s.description or ""
        if args.format == "table" and args.name is None and len(description) > _DESCRIPTION_WIDTH:
            description = description[: _DESCRIPTION_WIDTH - 3] + "..."
        rows.append({
            "name": s.name, "status": s.status, "trials": s.n_trials,
            "progress": f"{done}/{s.n_trials}",
            **{status: c.get(status, 0) for status in _SWEEP_COUNT_COLUMNS},
            "created": _minute(s.created_at),
            **({"started": _minute(s.started_at), "finished": _minute(s.finished_at),
                "spec_hash": s.spec_hash} if args.name is not None else {}),
            "description": description,
        })
    if not rows and args.format == "table":
        print("no sweeps yet: run `bench run examples/quickstart.yaml`")
        return EXIT_OK
    if args.name is not None and args.format == "table":
        width = max(len(k) for k in rows[0])
        sys.stdout.write("".join(f"{k + ':':<{width + 2}}{v}\n" for k, v in rows[0].items()))
        return EXIT_OK
    _emit(pd.DataFrame(rows), args.format, None)
    return EXIT_OK


def _minute(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


def _where(db: str | None) -> str:
    from bench_service.store import mask_url, resolve_url

    return mask_url(resolve_url(db))


#: ``bench sweeps`` count columns: every trial status but ``pending`` (progress covers it).
_SWEEP_COUNT_COLUMNS = tuple(s for s in TRIAL_STATUSES if s != "pending")
#: Characters of a description shown in ``bench sweeps``' table (csv/json: all of it).
_DESCRIPTION_WIDTH = 40

TABLE_COLUMNS = ["trial_id", "workload", "optimizer", "scheduler", "regularizer", "seed",
                 "status", "final_val_loss", "best_val_loss", "final_val_accuracy",
                 "best_val_accuracy", "diverged_step", "wall_time", "step_time_mean",
                 "step_time_p90", "optimizer_state_bytes", "peak_memory_bytes", "execution"]


def cmd_results(args: argparse.Namespace) -> int:
    from bench_service.store import Store

    filters = {k: getattr(args, k) for k in _FILTERS if getattr(args, k)}
    if args.api:
        from bench_service.cli_service import api_results

        df = api_results(args, filters)
        if args.format == "table" and args.best:
            df = df.drop(columns=["cell_key"], errors="ignore")
        elif args.format == "table" and not args.curves:
            df = df[[c for c in TABLE_COLUMNS if c in df.columns]]
        _emit(df, args.format, args.output)
        return EXIT_OK
    store = Store.open_existing(args.db)
    _check_filters(store, args.sweep, filters)
    if args.best:
        from bench_service.sweep.best import best_table

        df = best_table(store, args.sweep, **filters)
        if args.format == "table":
            df = df.drop(columns=["cell_key"])
    elif args.curves:
        df = store.curves_frame(args.sweep, names=args.metric, **filters)
    else:
        df = store.trials_frame(args.sweep, **filters)
        if args.format == "table":
            df = df[[c for c in TABLE_COLUMNS if c in df.columns]]
    store.close()
    _emit(df, args.format, args.output)
    return EXIT_OK


def _check_filters(store: Any, sweep: str, filters: dict[str, list[str]]) -> None:
    """An axis filter value that no trial of the sweep has is a typo until shown otherwise:
    say which values the sweep has (closest first) instead of printing "(no rows)".

    Status and role are closed vocabularies the store checks itself; a valid status that no
    trial has (``--status failed``) is a real, empty answer.
    """
    for axis in AXES:
        wanted = filters.get(axis)
        if not wanted:
            continue
        present = store.values_of(sweep, axis)
        missing = [v for v in wanted if v not in present]
        if missing:
            raise CliError(f"no trial of sweep {sweep!r} has {axis} {missing[0][:80]!r}"
                           f"{_known(missing[0], present, f'its {axis}s')}")


def _known(value: str, present: list[str], what: str = "known", limit: int = 30) -> str:
    """`` (did you mean 'adam'?); its optimizers: adam, sgd``: the closest matches first."""
    import difflib

    close = difflib.get_close_matches(value[:80], present, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    shown = ", ".join(present[:limit]) + (
        f", ... ({len(present)} in all)" if len(present) > limit else "")
    return f"{hint}; {what}: {shown or '(none)'}"


# --- db / list / dashboard -------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from bench_service.store import current_revision, mask_url, resolve_url, upgrade
    from bench_service.store.db import sqlite_file
    from bench_service.store.migrate import head_revision, known_revisions

    url = resolve_url(args.db)
    if args.db_command == "upgrade":
        upgrade(url)
    else:
        path = sqlite_file(url)
        if path is not None and not path.is_file():
            raise CliError(f"database file {str(path)[:300]} does not exist")
    revision = current_revision(url)
    note = ""
    if revision is None:
        note = "  (no bench schema: `bench db upgrade` creates it)"
    elif revision not in known_revisions():
        note = f"  (newer than this bench, which knows up to {head_revision()}: upgrade bench)"
    elif revision != head_revision():
        note = f"  (this bench needs {head_revision()}: run `bench db upgrade`)"
    print(f"{revision}  ({mask_url(url)}){note}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS

    out = io.StringIO()
    registries: dict[str, Any] = {"optimizers": OPTIMIZERS, "schedulers": SCHEDULERS,
                                  "regularizers": REGULARIZERS, "workloads": WORKLOADS}
    for axis in _LIST_AXES:
        reg = registries[axis]
        if args.axis not in ("all", axis):
            continue
        out.write(f"{axis}:\n")
        for entry in reg:
            space = entry.space() if hasattr(entry, "space") else entry.hyperparams
            params = ", ".join(f"{p.name}={p.default!r}" for p in space)
            desc = entry.describe() if hasattr(entry, "describe") else entry.description
            out.write(f"  {entry.name:<24} {desc}\n")
            if params:
                out.write(f"  {'':<24} params: {params}\n")
            if getattr(entry, "license", None):
                out.write(f"  {'':<24} source: {entry.source} ({entry.license})\n")
    sys.stdout.write(out.getvalue())
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from bench_service.store import Store

    if not 0 < args.port < 65536:  # the cheapest check first
        raise CliError(f"--port must be 1-65535, got {args.port}")
    # Before launching: a database that does not exist (or has no bench schema) is one line
    # here, not an empty database created by the app.
    Store.open_existing(args.db).close()
    from bench_service.dashboard_launcher import launch

    return launch(args.db, host=args.host, port=args.port, token=args.token)


def cmd_import(args: argparse.Namespace) -> int:
    from bench_service.cli_deepobs import ImportFormatError
    from bench_service.cli_deepobs import cmd_import as run_import

    try:
        return run_import(args)
    except ImportFormatError as exc:
        raise CliError(str(exc)) from None


def cmd_export(args: argparse.Namespace) -> int:
    from bench_service.cli_deepobs import ImportFormatError
    from bench_service.cli_deepobs import cmd_export as run_export

    try:
        return run_export(args)
    except ImportFormatError as exc:
        raise CliError(str(exc)) from None


def cmd_data(args: argparse.Namespace) -> int:
    from bench_service.cli_data import cmd_data as run_data

    return run_data(args)


def cmd_analyze(args: argparse.Namespace) -> int:
    from bench_service.cli_analyze import cmd_analyze as run_analyze

    return run_analyze(args)


def cmd_report(args: argparse.Namespace) -> int:
    from bench_service.cli_analyze import cmd_report as run_report

    return run_report(args)


_HANDLERS = {
    "run": cmd_run, "sweeps": cmd_sweeps, "results": cmd_results, "db": cmd_db,
    "list": cmd_list, "dashboard": cmd_dashboard, "import": cmd_import, "export": cmd_export,
    "data": cmd_data,
    "analyze": cmd_analyze, "report": cmd_report,
}


def _service_handlers() -> None:
    from bench_service.cli_service import HANDLERS

    _HANDLERS.update(HANDLERS)


_service_handlers()


def run() -> None:
    """The ``bench`` console script: ``main`` (embedded Ray started early), then exit.

    ``gc.freeze()`` first: at exit the interpreter garbage-collects every object that torch,
    Ray, SQLAlchemy and pandas created, ~1 s after a ``bench run`` for memory the OS takes
    back anyway; frozen objects are skipped.
    """
    code = main(start_ray_early=True)
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
