"""Convergence page: any stored metric against steps, epochs or wall-clock time.

Lines are groups of runs (by optimizer, schedule, regularizer, workload or whole cell),
panels are facets by another axis. The mean across a group's runs is drawn with a min–max or
±1 std band; both are computed in SQL on downsampled buckets (``curve_bands``), so 1,000 runs
cost a few thousand rows. The learning rate of the same runs is drawn in a strip under each
panel, run by run (each distinct schedule once, never a mean of schedules), on a log axis
that shows its values; every diverged run gets a red ✕ where it blew up.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from bench_service.dashboard import analysis, charts, data, labels, state, ui
from bench_service.dashboard.palette import color_map, dash_map
from bench_service.dashboard.smoothing import smooth_columns
from bench_service.vocab import AXES, TUNED_AXES

GROUPS = ("optimizer", "scheduler", "regularizer", "workload", "cell")
FACETS = ("workload", "optimizer", "scheduler", "regularizer", "none")
BANDS = {"minmax": "min–max", "std": "±1 std", "none": "none"}
MODES = {"mean": "mean ± band", "runs": "individual runs"}
#: Points per line (buckets) requested from the database ...
MAX_POINTS = 200
#: ... and in a whole chart: many lines get fewer points each (a browser draws 20,000
#: points briskly, 200 lines × 200 points less so, and nobody reads them at full detail).
MAX_CHART_POINTS = 20_000
#: Above this many lines, bands are left out (a few hundred overlapping bands are a blur)
#: and the lines of one optimizer and schedule are drawn as one trace (one legend entry).
MAX_BAND_LINES = 40
#: Above this many runs, "individual runs" falls back to means (a browser cannot draw more).
MAX_RUNS = 300


def metric_options(catalog: pd.DataFrame) -> list[tuple[str, str]]:
    """(name, scope) choices, validation metrics first, the learning rate last."""
    order = {"val_loss": 0, "val_accuracy": 1, "val_perplexity": 2, "train_loss": 3,
             "grad_norm": 8, "lr": 9}
    opts = [(str(n), str(s)) for n, s in zip(catalog["name"], catalog["scope"], strict=True)]
    return sorted(opts, key=lambda o: (order.get(o[0], 5), o[0], o[1] != "step"))


def metric_param(option: tuple[str, str], options: list[tuple[str, str]]) -> str:
    """URL text of a metric: its name, plus ``@scope`` when the name has two scopes."""
    name, scope = option
    return name if sum(o[0] == name for o in options) == 1 else f"{name}@{scope}"


def parse_metric(raw: str, options: list[tuple[str, str]]) -> tuple[str, str] | None:
    """``val_loss``, ``train_loss@epoch`` or ``?metric=train_loss&scope=epoch`` → option."""
    name, _, scope = raw.partition("@")
    scope = scope or st.query_params.get("scope", "")
    matches = [o for o in options if o[0] == name and (not scope or o[1] == scope)]
    return matches[0] if matches else None


def line_columns(group: str, facet: str | None) -> list[str]:
    """Trial columns whose values make one line: the group axis, or a whole cell (every
    axis but the facet)."""
    if group == "cell":
        return [a for a in (*TUNED_AXES, "workload") if a != facet]
    return [group]


def style(
    frame: pd.DataFrame, group: str, cols: list[str], facet: str | None,
    among: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add ``line`` (legend label), ``color``, ``dash`` and ``facet`` columns to a frame.

    Computed once per distinct line and joined back: per-row string work is seconds on the
    40,000 points of a 1,000-run sweep. ``among`` (the chart's trials) fixes the colours of
    names outside the registries, so the curves, the LR strip and the ✕ marks agree.
    """
    keys = list(dict.fromkeys([*cols, *([facet] if facet else []),
                               *(["optimizer", "scheduler"] if group == "cell" else [group])]))
    if frame.empty:
        return frame.assign(line=[], color=[], dash=[], facet=[])
    combos = frame[keys].drop_duplicates().reset_index(drop=True)
    text = combos.astype(str)
    combos["line"] = [" / ".join(row) for row in text[cols].itertuples(index=False)]
    names = among.astype({c: str for c in keys}) if among is not None else text
    if group == "cell":
        colors = color_map("optimizer", [*names["optimizer"], *text["optimizer"]])
        dashes = dash_map("scheduler", [*names["scheduler"], *text["scheduler"]])
        combos["color"] = [colors[v] for v in text["optimizer"]]
        combos["dash"] = [dashes[v] for v in text["scheduler"]]
    else:
        colors = color_map(group, [*names[group], *text[group]])
        combos["color"] = [colors[v] for v in text[group]]
        combos["dash"] = "solid"
    combos["facet"] = text[facet] if facet else ""
    return frame.merge(combos, on=keys, how="left", sort=False)


def crowd(frame: pd.DataFrame, group: str, crowded: bool) -> pd.DataFrame:
    """With many lines, give them a coarser ``legend`` (what their colour and dash encode)
    so the chart draws one trace per legend entry (see ``charts.convergence_figure``)."""
    if not crowded or frame.empty:
        return frame
    if group == "cell":
        legend = frame["optimizer"].astype(str) + " / " + frame["scheduler"].astype(str)
    else:
        legend = frame[group].astype(str)
    return frame.assign(legend=legend)


def filter_widgets(trials: pd.DataFrame) -> dict[str, list[Any] | None]:
    """Filters on the trials (``None``: everything, which keeps the query and its cache key
    simple)."""
    chosen: dict[str, list[Any] | None] = {}
    with st.expander("Filter runs", icon=":material/filter_list:"):
        cols = st.columns(4)
        for i, axis in enumerate(AXES):
            values = sorted(trials[axis].astype(str).unique())
            picked = cols[i].multiselect(labels.AXES[axis], values, default=values,
                                         key=f"conv_filter_{axis}")
            chosen[axis] = None if set(picked) == set(values) else picked
        lower = st.columns(3)
        seeds = sorted(int(s) for s in trials["seed"].dropna().unique())
        picked_seeds = lower[0].multiselect("seeds", seeds, default=seeds, key="conv_seed")
        chosen["seed"] = None if set(picked_seeds) == set(seeds) else picked_seeds
        statuses = sorted(trials["status"].unique())
        default_status = [s for s in statuses if s != "pending"] or statuses
        picked_status = lower[1].multiselect(
            "status", statuses, default=default_status, key="conv_status",
            help="Diverged runs are included by default and marked where they blew up.")
        chosen["status"] = None if set(picked_status) == set(statuses) else picked_status
        roles = sorted(trials["role"].unique())
        default_roles = [r for r in roles if r != "tuning"] or roles
        picked_roles = lower[2].multiselect(
            "role", roles, default=default_roles, key="conv_role",
            help="A tuned sweep's tuning trials each use other hyperparameters; they are "
            "left out of the means unless chosen here.")
        chosen["role"] = None if set(picked_roles) == set(roles) else picked_roles
    return chosen


def selected_trials(trials: pd.DataFrame, filters: dict[str, list[Any] | None]) -> pd.DataFrame:
    """The trials the filters keep (the same selection the SQL filters make)."""
    mask = pd.Series(True, index=trials.index)
    for column, values in filters.items():
        if values is None:
            continue
        if column == "seed":
            mask &= trials[column].astype("float64").isin([float(v) for v in values])
        else:
            mask &= trials[column].astype(str).isin([str(v) for v in values])
    return trials[mask]


def main() -> None:
    ctx = state.context()
    st.title("Convergence")
    ui.stop_without_sweep(ctx)
    url, sid, fp = ctx.url, ctx.sweep_id, ctx.fingerprint
    catalog = data.catalog(url, sid, fp)
    trials = data.trials(url, sid, fp)
    if catalog.empty or trials.empty:
        st.info(f"Sweep **{ctx.sweep_name}** has no metric points yet; they appear here as "
                "soon as its first trials report (the page refreshes on reload).")
        return
    options = metric_options(catalog)
    default = next((o for o in options if o == ("val_loss", "epoch")), options[0])

    c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
    metric = state.synced_choice(
        "Metric", options, param="metric", key="conv_metric", default=default, container=c1,
        format_func=lambda o: labels.metric_option(*o),
        to_param=lambda o: metric_param(o, options),
        from_param=lambda raw: parse_metric(raw, options), what="metric",
    )
    name, scope = metric
    x = state.synced_choice(
        "x axis", list(labels.X_AXES), param="x", key="conv_x", container=c2, widget="radio",
        format_func=lambda v: {"step": "steps", "epoch": "epochs",
                               "wall_time": "wall-clock"}[v], what="x axis",
    )
    group = state.synced_choice(
        "Colour by", list(GROUPS), param="group", key="conv_group", container=c3,
        format_func=lambda v: labels.AXES[v], what="grouping",
    )
    facet_choice = state.synced_choice(
        "Panels by", [f for f in FACETS if f != group], param="facet", key="conv_facet",
        default="workload" if group != "workload" else "none", container=c4,
        format_func=lambda v: "one panel" if v == "none" else labels.AXES[v], what="facet",
    )
    facet = None if facet_choice == "none" else facet_choice

    c1, c2, c3, c4, c5 = st.columns([2, 2, 1, 1, 3], vertical_alignment="center")
    mode = c1.radio("Show", list(MODES), format_func=MODES.__getitem__, key="conv_mode",
                    horizontal=True)
    band = c2.radio("Band across runs", list(BANDS), format_func=BANDS.__getitem__,
                    key="conv_band", horizontal=True, disabled=mode == "runs")
    log_y = c3.toggle("Log y", value=name in ("train_loss", "val_loss", "grad_norm"),
                      key="conv_log")
    has_lr = ((catalog["name"] == "lr") & (catalog["scope"] == "epoch")).any()
    show_lr = c4.toggle("LR", value=bool(has_lr) and name != "lr", key="conv_lr",
                        disabled=not has_lr, help="The learning rate of the same runs, "
                        "drawn under each panel.")
    beta = c5.slider("Smoothing (EMA β)", 0.0, 0.99, 0.0, 0.01, key="conv_smooth",
                     help="Bias-corrected exponential moving average, as in TensorBoard: "
                     "S_t = β·S_{t−1} + (1−β)·y_t, shown as S_t / (1 − β^t).")

    filters = filter_widgets(trials)
    chosen = selected_trials(trials, filters)
    if chosen.empty:
        st.info("No runs match the filters.")
        return
    fkey = data.filter_key(filters)
    row = catalog[(catalog["name"] == name) & (catalog["scope"] == scope)].iloc[0]
    x_max = {"step": row["max_step"], "epoch": row["max_epoch"],
             "wall_time": row["max_wall_time"]}[x]
    x_max = None if pd.isna(x_max) else float(x_max)
    ppr = int(row["points_per_run"])
    cols = line_columns(group, facet)
    by = tuple(dict.fromkeys([*cols, *([facet] if facet else [])]))
    runs_frame: pd.DataFrame | None = None
    if mode == "runs" and len(chosen) > MAX_RUNS:
        st.warning(f"{len(chosen)} runs match; drawing individual runs is limited to "
                   f"{MAX_RUNS}. Showing means instead: narrow the filters to see runs.")
        mode = "mean"
    n_lines = len(chosen) if mode == "runs" else int(chosen.groupby(list(by)).ngroups)
    max_points = int(max(50, min(MAX_POINTS, MAX_CHART_POINTS // max(1, n_lines))))
    crowded = mode == "mean" and n_lines > MAX_BAND_LINES
    if crowded:
        st.caption(f"{n_lines} lines: above {MAX_BAND_LINES}, bands are left out and the "
                   "legend has one entry per optimizer / schedule (hover names each line); "
                   "filter or group more coarsely to see bands.")
        band = "none"
    metric_spec = {"name": name, "scope": scope, "max_points": max_points, "x_max": x_max,
                   "points_per_run": ppr}
    lr_spec: dict[str, Any] | None = None
    if show_lr and has_lr:
        lr_row = catalog[(catalog["name"] == "lr") & (catalog["scope"] == "epoch")].iloc[0]
        lr_max = {"step": lr_row["max_step"], "epoch": lr_row["max_epoch"],
                  "wall_time": lr_row["max_wall_time"]}[x]
        lr_spec = {"name": "lr", "scope": "epoch", "max_points": max_points,
                   "x_max": None if pd.isna(lr_max) else float(lr_max),
                   "points_per_run": int(lr_row["points_per_run"])}
    lr_raw: pd.DataFrame | None = None
    if mode == "runs":
        raw = data.runs(url, sid, fp, name=name, scope=scope, x=x, filters=fkey,
                        trial_ids=tuple(int(i) for i in chosen["trial_id"]),
                        max_points=max_points, x_max=x_max, points_per_run=ppr)
        raw = raw.rename(columns={"value": "y"})
        runs_frame = style(smooth_columns(raw, ["y"], ["trial_id"], beta), group, cols, facet,
                           chosen)
        lines = pd.DataFrame(columns=["facet", "line", "color", "dash", "x", "y", "lo", "hi",
                                      "n"])
        plotted = runs_frame[["facet", "line", "trial_id", "seed", "status", "x", "y"]]
        if lr_spec is not None:
            _, lr_raw = data.bands_and_lr(url, sid, fp, metric=None, lr=lr_spec, x=x,
                                          group_by=by, filters=fkey)
    else:
        bands, lr_raw = data.bands_and_lr(url, sid, fp, metric=metric_spec, lr=lr_spec, x=x,
                                          group_by=by, filters=fkey)
        assert bands is not None
        raw = bands.assign(
            y=bands["mean"],
            lo=bands["min"] if band == "minmax" else bands["mean"] - bands["std"]
            if band == "std" else float("nan"),
            hi=bands["max"] if band == "minmax" else bands["mean"] + bands["std"]
            if band == "std" else float("nan"),
        )
        smoothed = smooth_columns(raw, ["y", "lo", "hi"], list(by), beta)
        lines = crowd(style(smoothed, group, cols, facet, chosen), group, crowded)
        plotted = lines[["facet", "line", "x", "y", "lo", "hi", "n"]].assign(
            raw_mean=smoothed["mean"].to_numpy())
    # Every distinct LR curve of the chosen runs, drawn as it was (never a mean of them).
    lr_frame = None
    if lr_raw is not None:
        lr_runs = lr_raw.rename(columns={"value": "y"}).merge(
            chosen[["trial_id", *AXES, "seed", "status"]], on="trial_id")
        lr_frame = crowd(analysis.distinct_curves(style(lr_runs, group, cols, facet, chosen)),
                         group, crowded)

    div = data.divergence(url, sid, fp, name=name, scope=scope, filters=fkey)
    marks: pd.DataFrame | None = None
    if not div.empty:
        where = {"step": div["diverged_step"], "epoch": div["epoch"],
                 "wall_time": div["wall_time"]}[x]
        marks = style(div, group, cols, facet, chosen).assign(
            x=where.fillna(div["step"]) if x == "step" else where, y=div["value"],
            text=[f"trial #{t} ({w}/{o}/{s}/{r}, seed {int(sd)}) diverged at step {int(ds)}"
                  if pd.notna(ds) else f"trial #{t} diverged"
                  for t, w, o, s, r, sd, ds in zip(div["trial_id"], div["workload"],
                                                   div["optimizer"], div["scheduler"],
                                                   div["regularizer"], div["seed"],
                                                   div["diverged_step"], strict=True)],
        )

    facets = sorted({*lines["facet"], *(runs_frame["facet"] if runs_frame is not None else [])})
    if not facets:
        st.info(f"No finite {labels.metric_label(name, unit=False)} values for these runs.")
        return
    band_text = "" if mode == "runs" or band == "none" else f", band: {BANDS[band]} across runs"
    fig = charts.convergence_figure(
        lines, facets=facets, x_label=labels.X_AXES[x], y_label=labels.metric_label(name),
        log_y=log_y, runs=runs_frame, lr=lr_frame, marks=marks,
        band_label=BANDS.get(band, ""),
    )
    series = [plotted.assign(series=name)]
    if lr_frame is not None:
        series.append(lr_frame[["facet", "line", "trial_id", "runs", "x", "y"]].assign(
            series="lr"))
    if marks is not None:
        series.append(marks[["facet", "line", "trial_id", "x", "y"]].assign(series="diverged"))
    n_runs = len(chosen)
    ui.chart(
        fig, pd.concat(series, ignore_index=True), key="convergence",
        filename=f"{ctx.sweep_name}_{name}_{scope}_by_{group}",
        caption=(f"{n_runs} runs; {'individual runs' if mode == 'runs' else 'mean'}"
                 f"{band_text}; at most {max_points} points per line (bucketed in the "
                 "database)" + (f"; EMA β = {beta:.2f}" if beta > 0 else "")),
    )
    if not div.empty:
        n_div = len(div)
        with st.expander(f"{n_div} diverged run{'s' * (n_div != 1)} (✕ on the chart)"):
            st.dataframe(div[["trial_id", *AXES, "seed", "diverged_step"]], hide_index=True)


main()
