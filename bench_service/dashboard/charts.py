"""Plotly figures of the dashboard: pure functions from tidy frames to ``go.Figure``.

No Streamlit and no database here, so every figure can be built and inspected in a test.
Conventions: colours come from ``palette`` (one per optimizer everywhere), axis titles say
what and in which unit, and a diverged run is drawn as a red ✕ where it blew up rather than
left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bench_service.dashboard.palette import (
    DASHES,
    DIVERGED_COLOR,
    STATUS_COLORS,
    color_map,
    dash_map,
)

#: Marker symbols (the schedule, where colour is the optimizer and lines are not drawn).
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")
#: Height in pixels of one facet row of a curve plot, and of the LR strip under it.
ROW_HEIGHT, LR_HEIGHT = 380, 150
_FONT = {"size": 13}


def _symbols(schedulers: Sequence[object]) -> dict[str, str]:
    """A marker symbol per schedule (placed as dashes are: registry order first)."""
    return {name: SYMBOLS[DASHES.index(dash) % len(SYMBOLS)]
            for name, dash in dash_map("scheduler", schedulers).items()}


def rgba(color: str, alpha: float) -> str:
    """``#RRGGBB`` → ``rgba(r, g, b, alpha)`` (band fills)."""
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


#: A one-row legend above the plot (for short, fixed legends such as statuses).
_TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}


def _layout(fig: go.Figure, height: int, **kwargs: object) -> go.Figure:
    """Common layout: readable font, legend on the right (many entries fit), full hover
    names; ``kwargs`` override any of it."""
    layout: dict[str, object] = {
        "height": height, "font": _FONT, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "legend": {"orientation": "v", "yanchor": "top", "y": 1.0, "x": 1.02,
                   "tracegroupgap": 2},
        "hoverlabel": {"namelength": -1},
    }
    layout.update(kwargs)
    fig.update_layout(**layout)
    return fig


def joined(
    frame: pd.DataFrame, part: str, label: pd.Series
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """x, y and hover text of several curves drawn as ONE trace, split by NaN gaps.

    Plotly's cost is per trace (about 2–3 ms each in Python, more in the browser), so a
    chart of 200 cells or 300 runs stays fast when curves that share a colour and dash are
    one trace; the hover text still names each curve.
    """
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    texts: list[str] = []
    for _key, g in frame.groupby(part, sort=False):
        xs += [g["x"].to_numpy(dtype="float64"), np.array([np.nan])]
        ys += [g["y"].to_numpy(dtype="float64"), np.array([np.nan])]
        texts += [str(label.loc[g.index[0]])] * len(g) + [""]
    if not xs:
        return np.array([]), np.array([]), []
    return np.concatenate(xs)[:-1], np.concatenate(ys)[:-1], texts[:-1]


def value_axis(values: pd.Series | Sequence[float] | np.ndarray) -> dict[str, object]:
    """Y-axis settings for a learning rate (or any positive hyperparameter curve).

    Learning rates differ by decades, so the axis is logarithmic, with its range set from the
    values (padded) rather than left to Plotly, which spans ±1 around a constant and so
    draws a constant 0.001 on an axis that reads as 0; ticks are plain numbers (0.001, 5e-05)
    rather than SI prefixes. Values ≤ 0 (a warm-up from 0) need a linear axis from 0.
    """
    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    ticks: dict[str, object] = {"tickformat": ".3~g", "exponentformat": "power"}
    if arr.size == 0:
        return {"type": "log", **ticks}
    lo, hi = float(arr.min()), float(arr.max())
    if lo > 0:
        a, b = math.log10(lo), math.log10(hi)
        pad = max(0.15, 0.08 * (b - a))
        return {"type": "log", "range": [a - pad, b + pad], **ticks}
    bottom, top = min(lo, 0.0), max(hi, 0.0)
    span = (top - bottom) or abs(hi) or 1.0
    return {"type": "linear", "range": [bottom - 0.05 * span, top + 0.05 * span], **ticks}


def _run_parts(frame: pd.DataFrame) -> tuple[str, pd.Series]:
    """How ``joined`` splits LR curves: per run (with how many runs share the curve) when
    the frame has runs, else per line."""
    if "trial_id" not in frame.columns:
        return "line", frame["line"]
    runs = frame["runs"] if "runs" in frame.columns else pd.Series(1, index=frame.index)
    label = (frame["line"].astype(str) + " · trial #" + frame["trial_id"].astype(str)
             + np.where(runs > 1, " (and " + (runs - 1).astype(str) + " more with this LR)",
                        ""))
    return "trial_id", label


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


# --------------------------------------------------------------------------- convergence


def convergence_figure(
    lines: pd.DataFrame,
    *,
    facets: Sequence[str],
    x_label: str,
    y_label: str,
    log_y: bool = False,
    runs: pd.DataFrame | None = None,
    lr: pd.DataFrame | None = None,
    marks: pd.DataFrame | None = None,
    band_label: str = "",
) -> go.Figure:
    """Metric curves per group, one panel per facet, with the LR curve in a strip below.

    Args:
        lines: ``facet, line, color, dash, x, y, lo, hi, n``: the (smoothed) mean per group;
            ``lo``/``hi`` bound the band (NaN: no band). Empty when ``runs`` is drawn. With a
            ``legend`` column, lines sharing a legend entry are drawn as one trace without
            bands (for charts of hundreds of lines; the hover names each line).
        facets: Panel order (``[""]`` for a single panel).
        runs: ``facet, line, color, dash, trial_id, seed, x, y``: individual runs instead of
            means (the runs of one group are one trace and one legend entry).
        lr: ``facet, line, color, dash, x, y`` and ``trial_id`` (with ``runs``: how many runs
            share that curve; ``legend`` as for ``lines``): each run's learning rate, drawn
            as a step function on a log axis fitted to the values (``value_axis``).
        marks: ``facet, line, color, x, y, text``: where diverged runs blew up.
    """
    facets = list(facets) or [""]
    rows, cols = _grid(len(facets))
    with_lr = lr is not None and not lr.empty
    lr_axis = value_axis(lr["y"]) if lr is not None and with_lr else {}
    per = 2 if with_lr else 1
    titles: list[str] = []
    for r in range(rows):
        for sub in range(per):
            for c in range(cols):
                i = r * cols + c
                titles.append(facets[i] if sub == 0 and i < len(facets) else "")
    heights = [ROW_HEIGHT, LR_HEIGHT] * rows if with_lr else [ROW_HEIGHT] * rows
    fig = make_subplots(
        rows=rows * per, cols=cols, subplot_titles=titles, row_heights=heights,
        vertical_spacing=min(0.08, 0.3 / max(1, rows * per)), horizontal_spacing=0.06,
    )
    shown: set[str] = set()

    def legend_once(name: str) -> bool:
        if name in shown:
            return False
        shown.add(name)
        return True

    for i, facet in enumerate(facets):
        r, c = divmod(i, cols)
        row = r * per + 1
        part = lines[lines["facet"] == facet] if not lines.empty else lines
        traces: list[go.Scatter] = []
        merged = "legend" in part.columns
        for name, g in (part.groupby("legend" if merged else "line", sort=False)
                        if not part.empty else []):
            color, dash = str(g["color"].iloc[0]), str(g["dash"].iloc[0])
            if merged:  # many lines: one trace per colour and dash, no bands
                x, y, text = joined(g, "line", g["line"])
                traces.append(go.Scatter(
                    x=x, y=y, text=text, mode="lines", name=name, legendgroup=name,
                    showlegend=legend_once(name), connectgaps=False,
                    line={"color": color, "dash": dash, "width": 1.5},
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}<extra></extra>",
                ))
                continue
            x = g["x"].to_numpy(dtype="float64")
            band = g[["lo", "hi"]].to_numpy(dtype="float64")
            keep = np.isfinite(band).all(axis=1)
            if keep.any():
                # One closed polygon per band (upper edge forward, lower edge back): half the
                # traces of the usual pair of "tonexty" lines.
                traces.append(go.Scatter(
                    x=np.concatenate([x[keep], x[keep][::-1]]),
                    y=np.concatenate([band[keep, 1], band[keep, 0][::-1]]),
                    mode="lines", line={"width": 0}, fill="toself",
                    fillcolor=rgba(color, 0.18), hoverinfo="skip", legendgroup=name,
                    showlegend=False, name=f"{name} {band_label}",
                ))
            traces.append(go.Scatter(
                x=x, y=g["y"].to_numpy(dtype="float64"), mode="lines", name=name,
                legendgroup=name, showlegend=legend_once(name),
                line={"color": color, "dash": dash, "width": 2},
                customdata=g["n"].to_numpy(dtype="float64"),
                hovertemplate=f"{name}<br>x=%{{x:.4g}}<br>y=%{{y:.4g}}<br>runs=%{{customdata}}"
                "<extra></extra>",
            ))
        if traces:
            fig.add_traces(traces, rows=row, cols=c + 1)
        if runs is not None and not runs.empty:
            sub = runs[runs["facet"] == facet]
            label = ("trial #" + sub["trial_id"].astype(str) + ", seed "
                     + sub["seed"].astype(str) + " · " + sub["line"].astype(str))
            run_traces = []
            for name, g in sub.groupby("line", sort=False):
                x, y, text = joined(g, "trial_id", label)
                run_traces.append(go.Scatter(
                    x=x, y=y, text=text, mode="lines", name=name, legendgroup=name,
                    showlegend=legend_once(name), opacity=0.75, connectgaps=False,
                    line={"color": str(g["color"].iloc[0]), "dash": str(g["dash"].iloc[0]),
                          "width": 1.2},
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}<extra></extra>",
                ))
            if run_traces:
                fig.add_traces(run_traces, rows=row, cols=c + 1)
        if marks is not None and not marks.empty:
            m = marks[(marks["facet"] == facet) & marks["y"].notna()]
            if not m.empty:
                fig.add_trace(go.Scatter(
                    x=m["x"], y=m["y"], mode="markers", name="diverged here",
                    legendgroup="diverged", showlegend=legend_once("diverged here"),
                    marker={"symbol": "x", "size": 13, "color": DIVERGED_COLOR,
                            "line": {"width": 1.5, "color": m["color"].tolist()}},
                    text=m["text"], hovertemplate="%{text}<extra></extra>",
                ), row=row, col=c + 1)
        fig.update_yaxes(title_text=y_label if c == 0 else None, row=row, col=c + 1,
                         type="log" if log_y else "linear")
        if with_lr:
            assert lr is not None
            metric_axis = fig.get_subplot(row, c + 1).xaxis.plotly_name.replace("axis", "")
            sub = lr[lr["facet"] == facet]
            merged_lr = "legend" in sub.columns
            lr_traces = []
            for name, g in sub.groupby("legend" if merged_lr else "line", sort=False):
                x, y, text = joined(g, *_run_parts(g))
                lr_traces.append(go.Scatter(
                    x=x, y=y, text=text, mode="lines", name=f"{name} lr", legendgroup=name,
                    showlegend=False, connectgaps=False,
                    line={"color": str(g["color"].iloc[0]), "width": 1.5,
                          "dash": str(g["dash"].iloc[0]), "shape": "hv"},
                    hovertemplate="%{text}<br>x=%{x:.4g}<br>lr=%{y:.4g}<extra></extra>",
                ))
            if lr_traces:
                fig.add_traces(lr_traces, rows=row + 1, cols=c + 1)
            fig.update_xaxes(matches=metric_axis, row=row + 1, col=c + 1, title_text=x_label)
            fig.update_yaxes(title_text="learning rate" if c == 0 else None, row=row + 1,
                             col=c + 1, **lr_axis)
        else:
            fig.update_xaxes(title_text=x_label, row=row, col=c + 1)
    return _layout(fig, rows * (ROW_HEIGHT + (LR_HEIGHT if with_lr else 0)) + 120)


# --------------------------------------------------------------------------- sweeps


def status_figure(sweeps: pd.DataFrame, statuses: Sequence[str]) -> go.Figure:
    """Stacked horizontal bars: how many trials of each sweep are in each status."""
    fig = go.Figure()
    names = sweeps["name"].astype(str).tolist()
    for status in statuses:
        fig.add_trace(go.Bar(
            y=names, x=sweeps[status], name=status, orientation="h",
            marker_color=STATUS_COLORS.get(status, "#999999"),
            hovertemplate=f"%{{y}}: %{{x}} {status}<extra></extra>",
        ))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="trials")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 160 + 34 * max(1, len(names)), legend=_TOP_LEGEND)


def cell_status_figure(trials: pd.DataFrame, statuses: Sequence[str]) -> go.Figure:
    """Trials per workload and optimizer, stacked by status (where a sweep went wrong)."""
    frame = trials.assign(where=trials["workload"] + " / " + trials["optimizer"])
    counts = frame.groupby(["where", "status"]).size().unstack(fill_value=0)
    fig = go.Figure()
    for status in statuses:
        if status in counts.columns and counts[status].sum() > 0:
            fig.add_trace(go.Bar(
                x=counts.index.tolist(), y=counts[status], name=status,
                marker_color=STATUS_COLORS.get(status, "#999999"),
            ))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="workload / optimizer")
    fig.update_yaxes(title_text="trials")
    return _layout(fig, 380, legend=_TOP_LEGEND)


# --------------------------------------------------------------------------- trial


def trial_figure(
    points: pd.DataFrame,
    *,
    x: str,
    x_label: str,
    labels: dict[tuple[str, str], str],
    diverged_step: int | None = None,
    log_y: bool = False,
) -> go.Figure:
    """All curves of one trial, one panel per (metric, scope); the divergence step marked."""
    keys = list(labels)
    metric_colors = color_map("metric", [name for name, _ in keys])
    rows, cols = _grid(len(keys), 2)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[labels[k] for k in keys],
                        vertical_spacing=min(0.12, 0.5 / max(1, rows)))
    for i, (name, scope) in enumerate(keys):
        r, c = divmod(i, cols)
        g = points[(points["name"] == name) & (points["scope"] == scope)]
        finite = g[np.isfinite(g["value"])]
        fig.add_trace(go.Scatter(
            x=finite[x], y=finite["value"], mode="lines+markers" if len(g) <= 60 else "lines",
            name=labels[(name, scope)], showlegend=False,
            line={"color": metric_colors[name], "shape": "hv" if name == "lr" else
                  "linear"}, marker={"size": 5},
        ), row=r + 1, col=c + 1)
        bad = g[~np.isfinite(g["value"])]
        if diverged_step is not None and (not bad.empty or x == "step"):
            where = float(bad[x].iloc[0]) if not bad.empty else float(diverged_step)
            y_at = finite["value"].iloc[-1] if not finite.empty else None
            if y_at is not None:
                fig.add_trace(go.Scatter(
                    x=[where], y=[y_at], mode="markers", showlegend=False, name="diverged",
                    marker={"symbol": "x", "size": 14, "color": DIVERGED_COLOR},
                    hovertemplate=f"diverged at step {diverged_step}<extra></extra>",
                ), row=r + 1, col=c + 1)
        fig.update_xaxes(title_text=x_label, row=r + 1, col=c + 1)
        if name == "lr":
            fig.update_yaxes(row=r + 1, col=c + 1, **value_axis(finite["value"]))
        elif log_y:
            fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    if diverged_step is not None and x == "step":
        fig.add_vline(x=diverged_step, line={"color": DIVERGED_COLOR, "dash": "dot"},
                      annotation_text=f"diverged at step {diverged_step}",
                      annotation_font_color=DIVERGED_COLOR)
    return _layout(fig, rows * 320 + 80)


# --------------------------------------------------------------------------- leaderboard


def ranking_figure(board: pd.DataFrame, objective_label: str) -> go.Figure:
    """Mean with 95 % CI error bars per cell, best at the top, one panel per workload."""
    workloads = list(dict.fromkeys(board["workload"]))
    colors = color_map("optimizer", board["optimizer"].unique())
    fig = make_subplots(rows=1, cols=max(1, len(workloads)), subplot_titles=workloads,
                        horizontal_spacing=0.12)
    shown: set[str] = set()
    for i, workload in enumerate(workloads):
        g = board[board["workload"] == workload].sort_values("rank", ascending=False)
        for optimizer, h in g.groupby("optimizer", sort=False):
            err_hi = (h["ci_high"] - h["mean"]).fillna(0)
            err_lo = (h["mean"] - h["ci_low"]).fillna(0)
            fig.add_trace(go.Scatter(
                x=h["mean"], y=h["cell"], mode="markers", name=str(optimizer),
                legendgroup=str(optimizer), showlegend=optimizer not in shown,
                marker={"size": 10, "color": colors[str(optimizer)]},
                error_x={"type": "data", "symmetric": False, "array": err_hi,
                         "arrayminus": err_lo, "thickness": 1.5},
                customdata=np.stack([h["rank"], h["n"], h["seeds"]], axis=-1),
                hovertemplate="%{y}<br>mean %{x:.4g}<br>rank %{customdata[0]}, "
                "%{customdata[1]} of %{customdata[2]} seeds finite<extra></extra>",
            ), row=1, col=i + 1)
            shown.add(str(optimizer))
        fig.update_xaxes(title_text=f"{objective_label} (mean, 95% CI)", row=1, col=i + 1)
        fig.update_yaxes(categoryorder="array", categoryarray=g["cell"].tolist(), row=1,
                         col=i + 1)
    n_cells = board.groupby("workload").size().max() if not board.empty else 1
    return _layout(fig, 160 + 26 * int(n_cells))


def heatmap_figure(
    board: pd.DataFrame, workload: str, objective_label: str, mode: str,
    regularizers: Sequence[str],
) -> go.Figure:
    """Optimizer × scheduler heatmaps of the mean objective, one panel per regularizer.

    The colour scale is flipped for "lower is better" so the best cell is always bright.
    """
    part = board[board["workload"] == workload]
    optimizers = list(dict.fromkeys(part.sort_values("optimizer")["optimizer"]))
    schedulers = list(dict.fromkeys(part.sort_values("scheduler")["scheduler"]))
    regs = [r for r in regularizers if (part["regularizer"] == r).any()] or [""]
    rows, cols = _grid(len(regs), 3)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"regularizer: {r}" for r in regs],
                        horizontal_spacing=0.08, vertical_spacing=0.15)
    finite = part["mean"][np.isfinite(part["mean"])]
    zmin, zmax = (float(finite.min()), float(finite.max())) if not finite.empty else (0.0, 1.0)
    for i, reg in enumerate(regs):
        g = part[part["regularizer"] == reg]
        z = g.pivot_table(index="optimizer", columns="scheduler", values="mean",
                          aggfunc="mean", dropna=False).reindex(index=optimizers,
                                                                columns=schedulers)
        sd = g.pivot_table(index="optimizer", columns="scheduler", values="std",
                           aggfunc="mean", dropna=False).reindex(index=optimizers,
                                                                 columns=schedulers)
        text = [[("" if not np.isfinite(v) else f"{v:.3g}" + (
            f"<br>±{s:.2g}" if np.isfinite(s) else "")) for v, s in zip(zr, sr, strict=True)]
            for zr, sr in zip(z.to_numpy(dtype=float), sd.to_numpy(dtype=float), strict=True)]
        r, c = divmod(i, cols)
        fig.add_trace(go.Heatmap(
            z=z.to_numpy(dtype=float), x=schedulers, y=optimizers, text=text,
            texttemplate="%{text}", colorscale="Viridis", reversescale=mode == "min",
            zmin=zmin, zmax=zmax, showscale=i == 0,
            colorbar={"title": {"text": objective_label}},
            hovertemplate="%{y} / %{x}<br>mean %{z:.4g}<extra></extra>",
        ), row=r + 1, col=c + 1)
        fig.update_xaxes(title_text="LR schedule", row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="optimizer" if c == 0 else None, row=r + 1, col=c + 1)
    return _layout(fig, rows * (120 + 40 * max(1, len(optimizers))) + 80)


def time_to_target_figure(ttt: pd.DataFrame) -> go.Figure:
    """Mean time to target (with 95 % CI) per cell, one panel per workload."""
    workloads = list(dict.fromkeys(ttt["workload"]))
    colors = color_map("optimizer", ttt["optimizer"].unique())
    fig = make_subplots(rows=1, cols=max(1, len(workloads)), subplot_titles=workloads,
                        horizontal_spacing=0.12)
    shown: set[str] = set()
    for i, workload in enumerate(workloads):
        g = ttt[(ttt["workload"] == workload) & ttt["time_mean"].notna()].sort_values(
            "time_mean", ascending=False)
        for optimizer, h in g.groupby("optimizer", sort=False):
            fig.add_trace(go.Bar(
                x=h["time_mean"], y=h["cell"], orientation="h", name=str(optimizer),
                legendgroup=str(optimizer), showlegend=optimizer not in shown,
                marker_color=colors[str(optimizer)],
                error_x={"type": "data", "symmetric": False,
                         "array": (h["time_ci_high"] - h["time_mean"]).fillna(0),
                         "arrayminus": (h["time_mean"] - h["time_ci_low"]).fillna(0)},
                customdata=np.stack([h["reached"], h["seeds"]], axis=-1),
                hovertemplate="%{y}<br>%{x:.3g} s<br>%{customdata[0]} of %{customdata[1]} "
                "seeds reached the target<extra></extra>",
            ), row=1, col=i + 1)
            shown.add(str(optimizer))
        fig.update_xaxes(title_text="time to target (s, mean of seeds that reached it)",
                         row=1, col=i + 1)
        fig.update_yaxes(categoryorder="array", categoryarray=g["cell"].tolist(), row=1,
                         col=i + 1)
    n = ttt.groupby("workload").size().max() if not ttt.empty else 1
    return _layout(fig, 160 + 26 * int(n))


def profile_figure(prof: pd.DataFrame, mode: str) -> go.Figure:
    """Performance profiles: fraction of workloads on which a cell is within τ of the best."""
    fig = go.Figure()
    colors = color_map("optimizer", prof["optimizer"].unique())
    dashes = dash_map("scheduler", prof["scheduler"].unique())
    for cell, g in prof.groupby("cell", sort=False):
        fig.add_trace(go.Scatter(
            x=g["tau"], y=g["fraction"], mode="lines", name=str(cell),
            line={"color": colors[str(g["optimizer"].iloc[0])],
                  "dash": dashes[str(g["scheduler"].iloc[0])], "shape": "hv"},
            hovertemplate=f"{cell}<br>τ=%{{x:.3g}}: %{{y:.0%}} of workloads<extra></extra>",
        ))
    ratio = "score / best score" if mode == "min" else "best score / score"
    fig.update_xaxes(title_text=f"τ (ratio to the best cell: {ratio}, log scale)", type="log")
    fig.update_yaxes(title_text="fraction of workloads within τ of the best", range=[0, 1.05],
                     tickformat=".0%")
    return _layout(fig, 460)


# --------------------------------------------------------------------------- tuning


def history_figure(table: pd.DataFrame, objective_label: str) -> go.Figure:
    """Optimisation history: each tuning trial's objective by trial number, and the best so
    far per cell; one panel per workload. Trials without a value (diverged, failed) are
    drawn as ✕ at the top of their panel, since they count against the budget."""
    workloads = list(dict.fromkeys(table["workload"]))
    colors = color_map("optimizer", table["optimizer"].unique())
    dashes = dash_map("scheduler", table["scheduler"].unique())
    fig = make_subplots(rows=1, cols=max(1, len(workloads)), subplot_titles=workloads,
                        horizontal_spacing=0.08)
    shown: set[str] = set()
    for i, workload in enumerate(workloads):
        g = table[table["workload"] == workload]
        top = g["objective"].max() if g["objective"].notna().any() else 1.0
        for cell, h in g.groupby("cell", sort=False):
            optimizer, scheduler = h["optimizer"].iloc[0], h["scheduler"].iloc[0]
            color = colors[str(optimizer)]
            ok = h[h["objective"].notna()]
            pruned = ok["status"] == "pruned"
            fig.add_trace(go.Scatter(
                x=ok["number"], y=ok["objective"], mode="markers", name=str(cell),
                legendgroup=str(cell), showlegend=cell not in shown,
                marker={"color": color, "size": 8,
                        "symbol": ["circle-open" if p else "circle" for p in pruned]},
                customdata=np.stack([ok["trial_id"], ok["status"]], axis=-1),
                hovertemplate=f"{cell}<br>trial %{{x}} (#%{{customdata[0]}}, "
                "%{customdata[1]})<br>objective %{y:.4g}<extra></extra>",
            ), row=1, col=i + 1)
            fig.add_trace(go.Scatter(
                x=h["number"], y=h["best_so_far"], mode="lines", name=f"{cell} best",
                legendgroup=str(cell), showlegend=False,
                line={"color": color, "dash": dashes[str(scheduler)], "shape": "hv"},
                hoverinfo="skip",
            ), row=1, col=i + 1)
            bad = h[h["objective"].isna()]
            if not bad.empty:
                fig.add_trace(go.Scatter(
                    x=bad["number"], y=[top] * len(bad), mode="markers", name="no value",
                    legendgroup="bad", showlegend="bad" not in shown,
                    marker={"symbol": "x", "size": 11, "color": DIVERGED_COLOR},
                    customdata=np.stack([bad["trial_id"], bad["status"]], axis=-1),
                    hovertemplate=f"{cell}<br>trial %{{x}} (#%{{customdata[0]}}): "
                    "%{customdata[1]}<extra></extra>",
                ), row=1, col=i + 1)
                shown.add("bad")
            shown.add(str(cell))
        fig.update_xaxes(title_text="tuning trial number", row=1, col=i + 1)
        fig.update_yaxes(title_text=objective_label if i == 0 else None, row=1, col=i + 1)
    return _layout(fig, 480)


def sensitivity_figure(
    table: pd.DataFrame, param: str, objective_label: str, log_x: bool
) -> go.Figure:
    """Objective against one hyperparameter per cell (DeepOBS's learning-rate sensitivity)."""
    column = f"param:{param}"
    workloads = list(dict.fromkeys(table["workload"]))
    colors = color_map("optimizer", table["optimizer"].unique())
    symbols = _symbols(table["scheduler"].unique())
    fig = make_subplots(rows=1, cols=max(1, len(workloads)), subplot_titles=workloads,
                        horizontal_spacing=0.08)
    shown: set[str] = set()
    for i, workload in enumerate(workloads):
        g = table[(table["workload"] == workload)]
        for cell, h in g.groupby("cell", sort=False):
            h = h.assign(p=pd.to_numeric(h[column], errors="coerce")).dropna(
                subset=["p", "objective"]).sort_values("p")
            if h.empty:
                continue
            fig.add_trace(go.Scatter(
                x=h["p"], y=h["objective"], mode="markers", name=str(cell),
                legendgroup=str(cell), showlegend=cell not in shown,
                marker={"size": 9, "color": colors[str(h["optimizer"].iloc[0])],
                        "symbol": symbols[str(h["scheduler"].iloc[0])]},
                hovertemplate=f"{cell}<br>{param}=%{{x:.4g}}<br>objective %{{y:.4g}}"
                "<extra></extra>",
            ), row=1, col=i + 1)
            shown.add(str(cell))
        fig.update_xaxes(title_text=param + (" (log scale)" if log_x else ""),
                         type="log" if log_x else "linear", row=1, col=i + 1)
        fig.update_yaxes(title_text=objective_label if i == 0 else None, row=1, col=i + 1)
    return _layout(fig, 460)


def importance_figure(imp: pd.DataFrame) -> go.Figure:
    """Parameter importance per cell (horizontal bars, one colour per parameter)."""
    fig = go.Figure()
    colors = color_map("param", imp["param"].unique())
    for param, g in imp.groupby("param", sort=True):
        fig.add_trace(go.Bar(y=g["cell"], x=g["importance"], name=str(param), orientation="h",
                             marker_color=colors[str(param)]))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="importance (fraction of the objective's variance)")
    return _layout(fig, 160 + 26 * max(1, imp["cell"].nunique()))
