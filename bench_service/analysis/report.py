"""``bench report``: one self-contained HTML file with every analysis, and LaTeX tables.

The HTML opens offline: plotly.js is inlined once (no CDN, no fonts or MathJax fetched), each
figure is a ``<div>`` drawn by it, tables are plain HTML. It holds the sweep's spec, the
environment (this machine's package versions and hardware, the trials' hosts and devices),
the plain-language summary, and each analysis with its notes. A first ``<script>`` records
any script error in ``window.benchErrors`` so a headless browser can check there were none.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import platform
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from bench_service.analysis import effects
from bench_service.analysis.run import Analysis, tables

#: Packages whose versions the report lists (read from metadata: nothing heavy is imported).
PACKAGES = ("bench-service", "torch", "numpy", "pandas", "scipy", "statsmodels", "plotly",
            "sqlalchemy", "ray", "optuna")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.8em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
.summary li{margin:.3em 0}.note{color:#666;font-size:.9em}
"""
_ERRORS_JS = ("window.benchErrors=[];window.addEventListener('error',function(e){"
              "window.benchErrors.push(String(e.message||e));});")


def environment(trials: pd.DataFrame | None = None) -> dict[str, Any]:
    """Versions of the packages that made and analysed the results, this machine's hardware,
    and the hosts/devices the trials ran on (with how many trials each)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "packages": versions,
    }
    if trials is not None:
        for column in ("host", "device"):
            if column in trials:
                counts = trials[column].dropna().astype(str)
                counts = counts[counts.ne("") & counts.ne("None")].value_counts()
                env[f"trial {column}s"] = {str(k): int(v) for k, v in counts.items()}
    return env


def _table(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or df.empty:
        return "<p class='note'>(no rows)</p>"
    shown = df.head(max_rows)
    text = shown.to_html(index=False, escape=True, border=0, na_rep="–",
                         float_format=lambda v: f"{v:.4g}")
    more = f"<p class='note'>first {max_rows} of {len(df)} rows</p>" if len(df) > max_rows \
        else ""
    return text + more


def _notes(items: list[str]) -> str:
    return "".join(f"<p class='note'>{html.escape(n)}</p>" for n in items)


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def build_html(a: Analysis, spec: Mapping[str, Any] | None, env: Mapping[str, Any]) -> str:
    """The report as one HTML document (see the module docstring)."""
    import plotly.offline

    from bench_service.analysis import figures

    def fig(f: Any) -> str:
        return str(f.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                             config={"displaylogo": False, "responsive": True}))

    t = tables(a)
    prep = a.prepared
    parts: list[str] = []
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<h1>Sweep {html.escape(a.sweep)}: analysis</h1>"
                 f"<p class='note'>generated {when} by bench report; objective "
                 f"{html.escape(prep.objective)} ({'lower' if prep.mode == 'min' else 'higher'}"
                 f" is better); {html.escape(prep.which)}</p>")
    parts.append(_section(
        "Summary", "<ul class='summary'>" + "".join(f"<li>{html.escape(s)}</li>"
                                                    for s in a.summary) + "</ul>",
        "<h3>Notes</h3>" + _notes(a.notes) if a.notes else ""))
    # --- effects
    eff = [fig(figures.effects_figure(t["effects"], t["cross_workload"]))] \
        if len(t["effects"]) else []
    if a.cross is not None:
        eff.append(f"<h3>Across workloads: {'mixed model' if a.cross.method == 'mixed' else 'rank-based test'}</h3>"  # noqa: E501
                   + _p(a.cross.reason) + _table(a.cross.table))
    else:
        eff.append(_p("A single workload: no cross-workload model."))
    best_pair = _strongest_interaction(t["effects"])
    if best_pair is not None:
        x, line = best_pair
        eff.append(f"<h3>Interaction plot: {html.escape(x)} × {html.escape(line)}</h3>")
        eff.append(fig(figures.interaction_figure(
            effects.interaction_table(prep.frame, x, line), x, line)))
    eff.append("<h3>Per workload (type II ANOVA)</h3>" + _table(t["effects"]))
    parts.append(_section("Factorial effects", *eff))
    # --- robust aggregates
    if len(a.aggregates):
        parts.append(_section(
            "Robust aggregates across workloads (rliable)",
            _p("Normalised score per workload: 1 = best result, 0 = worst. IQM and median "
               "with 95 % stratified bootstrap intervals."),
            fig(figures.intervals_figure(a.aggregates)),
            _table(a.aggregates[a.aggregates["metric"] == "IQM"].sort_values(
                "estimate", ascending=False)),
            "<h3>Probability of improvement</h3>",
            fig(figures.improvement_figure(a.improvement)) if len(a.improvement) else ""))
    # --- ranks
    rank_parts = [_notes(a.ranking.notes)]
    if len(a.ranking.ranks) >= 2:
        rank_parts.insert(0, fig(figures.cd_figure(a.ranking)))
    rank_parts.append(_table(a.ranking.ranks) + "<h3>Nemenyi pairwise p-values</h3>"
                      + _table(a.ranking.pairwise))
    parts.append(_section("Rank statistics (Friedman, Nemenyi)", *rank_parts))
    parts.append(_section("Paired comparisons against each workload's best",
                          _p("Differences other − best, paired by seed; 95 % t interval; "
                             "Holm-corrected p-values."), _table(a.paired)))
    if len(a.algoperf):
        parts.append(_section("AlgoPerf score: time and steps to target",
                              fig(figures.profile_figure(a.profiles, a.algoperf)),
                              _table(a.algoperf)))
    if len(a.budget):
        parts.append(_section(
            "Tuning budget", fig(figures.budget_figure(a.budget)),
            "<h3>One-shot against tuned</h3>" + _table(a.one_shot),
            ("<h3>Learning-rate sensitivity</h3>" + fig(figures.lr_figure(a.lr)))
            if len(a.lr) else ""))
    parts.append(_section("Spec", "<pre>" + html.escape(json.dumps(
        dict(spec or {}), indent=2, sort_keys=True, default=str)) + "</pre>"))
    parts.append(_section("Environment", "<pre>" + html.escape(json.dumps(
        dict(env), indent=2, default=str)) + "</pre>"))
    body = "\n".join(parts)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>bench report: {html.escape(a.sweep)}</title>"
            f"<script>{_ERRORS_JS}</script><style>{_CSS}</style>"
            f"<script>{plotly.offline.get_plotlyjs()}</script></head>"
            f"<body>{body}</body></html>")


def _strongest_interaction(table: pd.DataFrame) -> tuple[str, str] | None:
    if table is None or table.empty:
        return None
    inter = table[table["term"].str.contains(":")]
    if inter.empty:
        mains = table[(table["term"] != "residual")]
        axes = list(dict.fromkeys(mains.sort_values("eta_sq", ascending=False)["term"]))
        return (axes[0], axes[1]) if len(axes) >= 2 else None
    term = str(inter.sort_values("eta_sq", ascending=False).iloc[0]["term"])
    x, line = term.split(":")
    return x, line


# --- LaTeX -----------------------------------------------------------------------------------
_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    return re.sub(r"[&%$#_{}~^\\]", lambda m: _LATEX_SPECIAL[m.group()], text)


def latex_table(df: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs ``table`` of ``df`` (numbers to 4 significant digits)."""
    def cell(v: Any) -> str:
        if isinstance(v, (bool,)):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "--" if v != v else f"{v:.4g}"
        return latex_escape(str(v))

    cols = list(df.columns)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small",
             r"\begin{tabular}{" + "l" * 1 + "r" * (len(cols) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(str(c)) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption)}}}",
              rf"\label{{tab:{label}}}", r"\end{table}", ""]
    return "\n".join(lines)


def build_latex(a: Analysis, max_rows: int = 40) -> str:
    """Every non-empty analysis table as a LaTeX ``table`` (needs ``\\usepackage{booktabs}``)."""
    out = [f"% bench report --latex: sweep {a.sweep}, objective {a.prepared.objective}", ""]
    for name, df in tables(a).items():
        if df is None or df.empty:
            continue
        out.append(latex_table(df.head(max_rows), f"{a.sweep}: {name.replace('_', ' ')}",
                               f"{a.sweep}-{name}"))
    return "\n".join(out)


def write_report(a: Analysis, spec: Mapping[str, Any] | None, env: Mapping[str, Any],
                 output: str | Path, latex: str | Path | None = None) -> list[Path]:
    """Write the HTML report (and the LaTeX tables); the paths written. Each file is written
    whole to a temporary name first, so a failure leaves nothing half-written."""
    written = []
    for path, text in ((Path(output), build_html(a, spec, env)),
                       *(((Path(latex), build_latex(a)),) if latex else ())):
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
