"""``bench analyze`` and ``bench report``: the analyses of one sweep on the command line.

``bench analyze --sweep NAME [--workload W] [--format table|json|csv]`` prints the summary,
the effects table, the rankings with their intervals and the paired table; ``bench report
--sweep NAME -o report.html [--latex tables.tex]`` writes the self-contained HTML report.
Both read the sweep through the store and run ``bench_service.analysis.analyze``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from typing import Any

#: The tables ``bench analyze`` prints as text, in order, with their titles.
TEXT_TABLES: tuple[tuple[str, str], ...] = (
    ("effects", "Factorial effects per workload (type II ANOVA; η² = share of the variance)"),
    ("cross_workload", "Across workloads"),
    ("aggregates", "Robust aggregates (normalised score, 95 % stratified bootstrap CI)"),
    ("ranks", "Mean ranks over (workload, seed) blocks"),
    ("paired", "Paired against each workload's best (other − best; Holm-corrected)"),
    ("algoperf", "AlgoPerf score on time and steps to target (r_max = 4)"),
    ("one_shot_vs_tuned", "One-shot against tuned"),
)


def add_parsers(sub: Any, db_arg: Any) -> None:
    """The ``analyze`` and ``report`` sub-commands (called by ``cli.build_parser``)."""
    an = sub.add_parser("analyze", help="effects, robust rankings and paired tests of a sweep")
    _common(an, db_arg)
    an.add_argument("--format", choices=("table", "json", "csv"), default="table")
    an.add_argument("--output", "-o", default=None, help="write to this file")
    rep = sub.add_parser("report", help="write a self-contained HTML report of a sweep")
    _common(rep, db_arg)
    rep.add_argument("--output", "-o", required=True, help="the HTML file to write")
    rep.add_argument("--latex", default=None, metavar="FILE",
                     help="also write the tables as LaTeX (booktabs) to FILE")


def _common(p: argparse.ArgumentParser, db_arg: Any) -> None:
    db_arg(p)
    p.add_argument("--sweep", required=True, help="sweep name")
    p.add_argument("--workload", default=None, help="only this workload")
    p.add_argument("--objective", default=None,
                   help="final:<metric>, best:<metric>, time_to_target, step_to_target "
                        "(default: the tuner's objective, else final:val_loss)")
    p.add_argument("--mode", choices=("min", "max"), default=None,
                   help="which direction is better (default: from the metric's name)")


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The analysis, the trials frame and the spec of ``args.sweep``."""
    from bench_service.analysis import analyze
    from bench_service.cli import CliError, _known
    from bench_service.store import Store

    with Store.open_existing(args.db) as store:
        info = store.get_sweep(args.sweep)
        if info is None:
            names = [s.name for s in store.list_sweeps()]
            raise CliError(f"unknown sweep {args.sweep[:200]!r}{_known(args.sweep, names)}")
        trials = store.trials_frame(args.sweep)
        spec = dict(info.spec)
    if args.workload is not None:
        present = sorted(set(trials["workload"]))
        if args.workload not in present:
            known = _known(args.workload, present, "its workloads")
            raise CliError(f"no trial of sweep {args.sweep!r} has workload "
                           f"{args.workload[:80]!r}{known}")
    try:
        result = analyze(trials, sweep=args.sweep, spec=spec, objective=args.objective,
                         mode=args.mode, workload=args.workload)
    except (ValueError, KeyError) as exc:
        raise CliError(f"--objective: {exc}") from None
    return result, trials, spec


def _fmt(df: Any) -> str:
    if df is None or df.empty:
        return "(no rows)"
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = out[c].map(lambda v: "–" if not math.isfinite(v) else f"{v:.4g}")
    return str(out.to_string(index=False))


def cmd_analyze(args: argparse.Namespace) -> int:
    from bench_service.analysis import tables

    result, _, _ = _load(args)
    named = tables(result)
    if args.format == "json":
        doc = {"sweep": result.sweep, "objective": result.prepared.objective,
               "mode": result.prepared.mode, "trials": result.prepared.which,
               "summary": result.summary, "notes": result.notes,
               "cross_workload_method": result.cross.method if result.cross else None,
               "cross_workload_reason": result.cross.reason if result.cross else None,
               "tables": {k: json.loads(v.to_json(orient="records")) for k, v in
                          named.items()}}
        text = json.dumps(doc, indent=1) + "\n"
    elif args.format == "csv":
        import pandas as pd

        frames = [v.assign(table=k)[["table", *v.columns]] for k, v in named.items() if len(v)]
        text = pd.concat(frames, ignore_index=True).to_csv(index=False) if frames else ""
    else:
        buf = io.StringIO()
        buf.write(f"sweep {result.sweep}: objective {result.prepared.objective} "
                  f"({'lower' if result.prepared.mode == 'min' else 'higher'} is better)\n\n")
        buf.write("Summary\n" + "".join(f"  - {s}\n" for s in result.summary))
        if result.notes:
            buf.write("\nNotes\n" + "".join(f"  - {n}\n" for n in result.notes))
        for key, title in TEXT_TABLES:
            df = named[key]
            if key == "aggregates" and len(df):
                df = df[df["metric"] == "IQM"].sort_values("estimate", ascending=False)
            if key == "cross_workload" and result.cross is not None:
                title += f" ({result.cross.reason})"
            if key in ("one_shot_vs_tuned",) and df.empty:
                continue
            buf.write(f"\n{title}\n{_fmt(df)}\n")
        text = buf.getvalue()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote the analysis of {result.sweep} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench_service.cli import CliError

    try:
        from bench_service.analysis.report import environment, write_report
    except ImportError as exc:  # plotly is the dashboard extra's
        raise CliError(f"bench report needs plotly: pip install 'bench-service[dashboard]' "
                       f"({exc})") from None
    result, trials, spec = _load(args)
    try:
        written = write_report(result, spec, environment(trials), args.output, args.latex)
    except OSError as exc:
        raise CliError(f"cannot write the report: {exc}") from None
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
