"""Plotly figures of the analyses, shared by the dashboard's Analysis page and the report.

Pure functions from the analysis tables to ``go.Figure`` (plotly comes with the
``dashboard`` extra; nothing else in ``bench_service.analysis`` needs it). Long cell lists are
cut to the best ``top`` cells so that a 1,000-cell sweep stays readable.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bench_service.analysis import effects
from bench_service.analysis.ranking import Ranking

_FONT = {"size": 13}
_MARGIN = {"l": 60, "r": 20, "t": 50, "b": 50}


def _layout(fig: go.Figure, height: int, **kwargs: object) -> go.Figure:
    fig.update_layout(height=height, font=_FONT, margin=_MARGIN,
                      hoverlabel={"namelength": -1}, **kwargs)
    return fig


def effects_figure(table: pd.DataFrame, cross: pd.DataFrame | None = None) -> go.Figure:
    """Share of the variance (η²) per term, one group of bars per workload (and 'all')."""
    fig = go.Figure()
    groups = [(str(w), g) for w, g in table.groupby("workload", sort=True)] if len(table) \
        else []
    if cross is not None and len(cross):
        groups.append(("all workloads", cross))
    for name, g in groups:
        g = g[g["term"] != "residual"]
        fig.add_bar(x=[effects.describe_term(t).removeprefix("the ") for t in g["term"]],
                    y=100 * g["eta_sq"].astype(float), name=name,
                    customdata=np.stack([g["p_holm"].astype(float)], axis=-1),
                    hovertemplate="%{x}: %{y:.1f} %% of the variance<br>Holm p = "
                    "%{customdata[0]:.3g}<extra>" + name + "</extra>")
    return _layout(fig, 420, barmode="group", yaxis_title="variance explained (η², %)",
                   legend_title="workload")


def interaction_figure(inter: pd.DataFrame, a: str, b: str, max_workloads: int = 4
                       ) -> go.Figure:
    """Mean objective per level of ``a`` (x) with one line per level of ``b``, per workload.
    Parallel lines: no interaction; crossing lines: the best ``a`` depends on ``b``."""
    workloads = list(dict.fromkeys(inter["workload"]))[:max_workloads]
    fig = make_subplots(rows=1, cols=max(1, len(workloads)), subplot_titles=workloads)
    for col, w in enumerate(workloads, start=1):
        part = inter[inter["workload"] == w]
        for level, g in part.groupby(b, sort=True):
            fig.add_scatter(x=g[a], y=g["mean"], mode="lines+markers", name=str(level),
                            legendgroup=str(level), showlegend=col == 1, row=1, col=col,
                            hovertemplate=f"{a}=%{{x}}<br>{b}={level}<br>mean %{{y:.4g}}"
                            "<extra></extra>")
    fig.update_xaxes(title_text=a)
    fig.update_yaxes(title_text="mean objective", col=1)
    return _layout(fig, 380, legend_title=b)


def intervals_figure(aggs: pd.DataFrame, top: int = 15) -> go.Figure:
    """IQM and median of the normalised score with their 95 % stratified bootstrap CIs."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["IQM", "median"], shared_yaxes=True)
    iqm = aggs[aggs["metric"] == "IQM"].sort_values("estimate", ascending=False).head(top)
    order = iqm["cell"].tolist()[::-1]
    for col, metric in enumerate(("IQM", "median"), start=1):
        part = aggs[(aggs["metric"] == metric) & aggs["cell"].isin(order)].set_index("cell")
        part = part.reindex(order)
        fig.add_scatter(
            x=part["estimate"], y=order, mode="markers", showlegend=False, row=1, col=col,
            error_x={"type": "data", "symmetric": False,
                     "array": (part["ci_high"] - part["estimate"]).fillna(0),
                     "arrayminus": (part["estimate"] - part["ci_low"]).fillna(0)},
            hovertemplate="%{y}: %{x:.3f}<extra>" + metric + "</extra>")
    fig.update_xaxes(title_text="normalised score (1 = best)", range=[-0.05, 1.05])
    return _layout(fig, max(300, 28 * len(order) + 120))


def improvement_figure(matrix: pd.DataFrame) -> go.Figure:
    """P(row cell beats column cell) as a heatmap."""
    cells = list(dict.fromkeys(matrix["x"]))
    z = matrix.pivot(index="x", columns="y", values="probability").reindex(
        index=cells, columns=cells)
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(), x=cells, y=cells, zmin=0, zmax=1, colorscale="RdBu",
        text=np.vectorize(lambda v: "" if not np.isfinite(v) else f"{v:.2f}")(z.to_numpy()),
        texttemplate="%{text}", colorbar={"title": "P(row > column)"},
        hovertemplate="P(%{y} > %{x}) = %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, max(360, 40 * len(cells) + 160))


def cd_figure(ranking: Ranking, top: int = 20) -> go.Figure:
    """Critical-difference diagram: mean ranks on one axis (best left), cells that are not
    told apart (Nemenyi, within CD) joined by a thick bar, the CD drawn above."""
    ranks = ranking.ranks.head(top)
    fig = go.Figure()
    n = len(ranks)
    ys = -np.arange(n, dtype=float) - 1
    fig.add_scatter(x=ranks["mean_rank"], y=ys, mode="markers+text", text=ranks["cell"],
                    textposition="middle right", showlegend=False,
                    hovertemplate="%{text}: mean rank %{x:.2f}<extra></extra>")
    for i, clique in enumerate(ranking.cliques):
        r = ranks.set_index("cell").loc[[c for c in clique if c in set(ranks["cell"])],
                                        "mean_rank"]
        if len(r):
            y = 0.5 + 0.25 * (i % 3)
            fig.add_scatter(x=[r.min(), r.max()], y=[y, y], mode="lines", showlegend=False,
                            line={"width": 6, "color": "#444"}, hoverinfo="skip")
    if math.isfinite(ranking.cd) and n:
        x0 = float(ranks["mean_rank"].min())
        fig.add_scatter(x=[x0, x0 + ranking.cd], y=[1.6, 1.6], mode="lines+text",
                        text=["", f"CD = {ranking.cd:.2f}"], textposition="top center",
                        line={"width": 2, "color": "#c00"}, showlegend=False,
                        hoverinfo="skip")
    fig.update_yaxes(visible=False, range=[-(n + 1), 2.2])
    fig.update_xaxes(title_text="mean rank over (workload, seed) blocks (1 = best)")
    test = "Friedman χ²" if ranking.k >= 3 else "Wilcoxon W"
    title = (f"{test} = {ranking.statistic:.3g}, p = {ranking.p:.3g}; "
             f"{ranking.k} cells, {ranking.blocks} blocks") if math.isfinite(ranking.p) \
        else "rank test not possible"
    return _layout(fig, max(320, 24 * n + 160), title=title)


def budget_figure(curves: pd.DataFrame, max_lines: int = 12) -> go.Figure:
    """Expected best objective after k tuning trials per cell, with its 95 % band."""
    fig = go.Figure()
    for (w, cell), g in list(curves.groupby(["workload", "cell"], sort=True))[:max_lines]:
        name = f"{w}: {cell}"
        fig.add_scatter(x=np.concatenate([g["k"], g["k"][::-1]]),
                        y=np.concatenate([g["ci_high"], g["ci_low"][::-1]]), fill="toself",
                        opacity=0.15, line={"width": 0}, showlegend=False, legendgroup=name,
                        hoverinfo="skip")
        fig.add_scatter(x=g["k"], y=g["expected_best"], mode="lines+markers", name=name,
                        legendgroup=name,
                        hovertemplate="k=%{x}: %{y:.4g}<extra>" + name + "</extra>")
    fig.update_xaxes(title_text="tuning trials k", dtick=1)
    fig.update_yaxes(title_text="expected best objective")
    return _layout(fig, 420)


def profile_figure(profiles: pd.DataFrame, scores: pd.DataFrame, top: int = 8) -> go.Figure:
    """AlgoPerf performance profiles ρ(τ) on time and on steps to target (best cells)."""
    measures = [m for m in ("time", "steps") if m in set(profiles.get("measure", []))]
    fig = make_subplots(rows=1, cols=max(1, len(measures)), shared_yaxes=True,
                        subplot_titles=[f"{m} to target" for m in measures])
    best = scores["cell"].head(top).tolist()
    for col, m in enumerate(measures, start=1):
        for cell in best:
            g = profiles[(profiles["measure"] == m) & (profiles["cell"] == cell)]
            fig.add_scatter(x=g["tau"], y=g["rho"], mode="lines", line_shape="hv", name=cell,
                            legendgroup=cell, showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(title_text="τ (ratio to the fastest)")
    fig.update_yaxes(title_text="ρ(τ): share of workloads", range=[-0.02, 1.02], col=1)
    return _layout(fig, 400)


def lr_figure(lr: pd.DataFrame, max_lines: int = 12) -> go.Figure:
    """Objective against learning rate of every tuning trial (DeepOBS sensitivity)."""
    fig = go.Figure()
    for (w, cell), g in list(lr.groupby(["workload", "cell"], sort=True))[:max_lines]:
        fig.add_scatter(x=g["lr"], y=g["value"], mode="lines+markers", name=f"{w}: {cell}")
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text="objective")
    return _layout(fig, 400)
