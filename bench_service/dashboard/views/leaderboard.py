"""Leaderboard page: which cell wins on each workload, by how much, and how reliably.

Per workload (the trials' ``workload`` label) the cells are ranked by the mean of the chosen
objective over seeds, with the sample std, a bootstrap percentile 95 % confidence interval
that stays within the seeds' range and ``n``, the seeds it rests on
(``bench_service.sweep.stats``, the same numbers as ``bench results --best``); a heatmap
shows optimizer × schedule per regularizer; time to target says how fast; the performance
profile (AlgoPerf) compares cells across all workloads at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from bench_service.dashboard import analysis, charts, data, state, ui
from bench_service.dashboard.palette import REGISTRY_ORDER

TAU_MAX = (1.5, 2.0, 3.0, 5.0, 10.0, 100.0)


def _tuned_objective(spec: dict[str, object]) -> str | None:
    tuning = spec.get("tuning")
    if isinstance(tuning, dict) and isinstance(tuning.get("objective"), dict):
        metric = tuning["objective"].get("metric")
        return f"final:{metric}" if isinstance(metric, str) else None
    return None


def main() -> None:
    ctx = state.context()
    st.title("Leaderboard")
    ui.stop_without_sweep(ctx)
    url, sid, fp = ctx.url, ctx.sweep_id, ctx.fingerprint
    all_trials = data.trials(url, sid, fp)
    trials, which = analysis.ranked_trials(all_trials)
    if trials.empty or not (trials["status"] != "pending").any():
        st.info(f"Sweep **{ctx.sweep_name}** has no finished trials to rank yet "
                f"({which}).")
        return
    options = analysis.objectives(trials)
    keys = [o.key for o in options]
    by_key = {o.key: o for o in options}
    preferred = _tuned_objective(data.spec(url, ctx.sweep_name, fp))
    default = preferred if preferred in keys else "final:val_loss" if "final:val_loss" in keys \
        else keys[0]
    c1, c2 = st.columns([3, 2])
    key = state.synced_choice(
        "Objective", keys, param="objective", key="lb_objective", default=default,
        container=c1, format_func=lambda k: by_key[k].label, what="objective",
    )
    objective = by_key[key]
    mode = c2.radio(
        "Better is", ["min", "max"], index=0 if objective.mode == "min" else 1,
        format_func={"min": "lower", "max": "higher"}.__getitem__, horizontal=True,
        key=f"lb_mode_{key}",
    )
    st.caption(f"Ranked: {which}. Mean ± sample std over seeds; 95% bootstrap percentile CI "
               "(it stays within the seeds' values, and with 2–3 seeds is about their range); "
               "`n`: the seeds with a value, which mean and CI rest on. A diverged or failed "
               "seed has no value and is counted in its own column.")
    board = data.leaderboard(url, sid, fp, key, mode)

    st.subheader("Ranking per workload")
    workloads = list(dict.fromkeys(board["workload"]))
    fig = charts.ranking_figure(board, objective.label)
    ui.chart(fig, board, key="ranking", filename=f"{ctx.sweep_name}_ranking_{key}",
             caption="Dots: mean over seeds; bars: 95% bootstrap confidence interval (hover for "
             "how many seeds it rests on); best at the top.")
    tabs = st.tabs(workloads)
    for tab, workload in zip(tabs, workloads, strict=True):
        part = board[board["workload"] == workload].drop(columns=["cell_key"])
        tab.dataframe(
            part, hide_index=True, key=f"lb_table_{workload}",
            column_config={c: st.column_config.NumberColumn(c, format="%.4g")
                           for c in ("mean", "std", "ci_low", "ci_high")},
        )

    st.subheader("Optimizer × LR schedule")
    workload = state.synced_choice(
        "Workload", workloads, param="workload", key="lb_workload", what="workload",
    )
    regs = [r for r in REGISTRY_ORDER["regularizer"] if r in set(board["regularizer"])]
    regs += sorted(set(board["regularizer"]) - set(regs))
    fig = charts.heatmap_figure(board, workload, objective.label, mode, regs)
    ui.chart(fig, board[board["workload"] == workload], key="heatmap",
             filename=f"{ctx.sweep_name}_heatmap_{workload}_{key}",
             caption="Mean over seeds (± std); brighter is better; one panel per "
             "regularizer.")

    st.subheader("Time to target")
    ttt = data.time_to_target(url, sid, fp)
    if ttt.empty or ttt["reached"].sum() == 0:
        st.info("No run reached its workload's target (see `bench list workloads` for the "
                "targets, or set `target` in the spec).")
    else:
        ui.chart(charts.time_to_target_figure(ttt), ttt, key="time_to_target",
                 filename=f"{ctx.sweep_name}_time_to_target",
                 caption="Wall-clock seconds until the workload's target was first reached, "
                 "mean over the seeds that reached it (hover for how many did).")

    st.subheader("Performance profile across workloads")
    tau_max = st.select_slider("τ up to", TAU_MAX, value=10.0, key="lb_tau")
    finite = board["mean"][np.isfinite(board["mean"])]
    if mode == "min" and (finite <= 0).any():
        st.info("The profile needs positive scores for 'lower is better' (ratios to the best);"
                " this objective has values ≤ 0.")
        return
    taus = np.geomspace(1.0, float(tau_max), 80).tolist()
    prof = analysis.profile(board, mode, taus)
    scores = analysis.profile_scores(prof)
    ui.chart(charts.profile_figure(prof, mode), prof, key="profile",
             filename=f"{ctx.sweep_name}_profile_{key}",
             caption=f"ρ(τ): share of the {len(workloads)} workload(s) on which a cell's mean "
             "is within a factor τ of the best cell's. Higher and further left is better.")
    st.dataframe(pd.DataFrame(scores), hide_index=True, key="lb_profile_scores",
                 column_config={"score": st.column_config.ProgressColumn(
                     "area under the profile", format="%.2f", min_value=0.0, max_value=1.0)})


main()
