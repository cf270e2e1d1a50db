"""Analysis page: which axis matters, what won across workloads, and how sure we are.

Everything here is ``bench_service.analysis.analyze`` (the numbers of ``bench analyze`` and
``bench report``): the plain-language summary, the share of the variance each axis and each
pair of axes explains (type II ANOVA per workload, a mixed or rank-based model across
workloads), interaction plots, rliable's IQM/median intervals and probability of
improvement, the critical-difference diagram, the paired comparisons, AlgoPerf's score on time
and on steps, and for tuned sweeps the budget curves. Every chart offers its data as CSV.
"""

from __future__ import annotations

import streamlit as st

from bench_service.analysis import effects
from bench_service.analysis import figures as fig
from bench_service.analysis import tables as analysis_tables
from bench_service.dashboard import analysis as board
from bench_service.dashboard import data, state, ui

ALL = "(all workloads)"


def main() -> None:
    ctx = state.context()
    st.title("Analysis")
    ui.stop_without_sweep(ctx)
    url, sid, fp, name = ctx.url, ctx.sweep_id, ctx.fingerprint, ctx.sweep_name
    trials = data.trials(url, sid, fp)
    if trials.empty or not trials["status"].isin(["completed", "diverged", "failed"]).any():
        st.info(f"Sweep **{name}** has no finished trials to analyse yet.")
        return
    options = [o for o in board.objectives(trials)
               if o.key.startswith("final:") or o.key in ("time_to_target",)]
    by_key = {o.key: o for o in options}
    default = data.spec(url, name, fp).get("tuning")
    preferred = f"final:{default['objective']['metric']}" if isinstance(default, dict) and \
        isinstance(default.get("objective"), dict) else "final:val_loss"
    keys = list(by_key) or ["final:val_loss"]
    c1, c2 = st.columns([3, 2])
    key = state.synced_choice("Objective", keys, param="objective", key="an_objective",
                              default=preferred if preferred in keys else keys[0],
                              container=c1, what="objective",
                              format_func=lambda k: by_key[k].label if k in by_key else k)
    workloads = [ALL, *sorted(set(trials["workload"].astype(str)))]
    chosen = state.synced_choice("Workload", workloads, param="workload", key="an_workload",
                                 container=c2, what="workload")
    result = data.analysis_result(url, sid, fp, name, key,
                                  None if chosen == ALL else chosen)
    named = analysis_tables(result)

    st.subheader("Summary")
    st.markdown("\n".join(f"- {s}" for s in result.summary))
    if result.notes:
        with st.expander(f"Notes ({len(result.notes)})"):
            st.markdown("\n".join(f"- {n}" for n in result.notes))

    st.subheader("Which axis matters")
    if len(named["effects"]):
        ui.chart(fig.effects_figure(named["effects"], named["cross_workload"]),
                 named["effects"], key="an_effects", filename=f"{name}_effects",
                 caption="Share of the variance of the objective each axis (and pair of "
                 "axes) explains, type II ANOVA per workload; seeds are the replicates.")
    if result.cross is not None:
        st.caption(f"Across workloads: {result.cross.reason}.")
        st.dataframe(result.cross.table, hide_index=True, key="an_cross")
    pairs = [t for t in named["effects"]["term"].unique() if ":" in t] \
        if len(named["effects"]) else []
    if pairs:
        ranked = named["effects"][named["effects"]["term"].isin(pairs)].groupby("term")[
            "eta_sq"].mean().sort_values(ascending=False)
        pair = st.selectbox("Interaction", list(ranked.index), key="an_pair",
                            format_func=effects.describe_term)
        a, b = pair.split(":")
        inter = effects.interaction_table(result.prepared.frame, a, b)
        ui.chart(fig.interaction_figure(inter, a, b), inter, key="an_interaction",
                 filename=f"{name}_interaction_{a}_{b}",
                 caption="Mean objective per level; parallel lines mean no interaction.")

    st.subheader("Across workloads: IQM, median, probability of improvement")
    if len(result.aggregates):
        ui.chart(fig.intervals_figure(result.aggregates), result.aggregates, key="an_iqm",
                 filename=f"{name}_aggregates",
                 caption="Normalised score (1 = best on the workload, 0 = worst); 95 % "
                 "stratified bootstrap intervals (rliable).")
    if len(result.improvement):
        ui.chart(fig.improvement_figure(result.improvement), result.improvement,
                 key="an_poi", filename=f"{name}_probability_of_improvement",
                 caption="P(row cell beats column cell), averaged over workloads.")

    st.subheader("Critical-difference diagram")
    if len(result.ranking.ranks) >= 2:
        ui.chart(fig.cd_figure(result.ranking), result.ranking.ranks, key="an_cd",
                 filename=f"{name}_ranks",
                 caption="Mean rank over (workload, seed) blocks; cells joined by a bar are "
                 "not told apart by Nemenyi's test.")
    else:
        st.info("Too few cells or blocks for a rank test.")

    st.subheader("Paired against the best")
    st.dataframe(named["paired"], hide_index=True, key="an_paired")
    ui.table_download(named["paired"], key="an_paired_csv", filename=f"{name}_paired",
                      label="Download table (CSV)")

    st.subheader("AlgoPerf score: time and steps to target")
    if len(result.algoperf) and len(result.profiles):
        ui.chart(fig.profile_figure(result.profiles, result.algoperf), result.algoperf,
                 key="an_algoperf", filename=f"{name}_algoperf",
                 caption="ρ(τ): share of workloads on which the cell is within τ of the "
                 "fastest; score B = area up to τ = 4 over 3.")

    if len(result.budget):
        st.subheader("Tuning budget")
        ui.chart(fig.budget_figure(result.budget), result.budget, key="an_budget",
                 filename=f"{name}_budget",
                 caption="Expected best objective after k tuning trials (random orderings).")
        st.dataframe(result.one_shot, hide_index=True, key="an_one_shot")
        if len(result.lr):
            ui.chart(fig.lr_figure(result.lr), result.lr, key="an_lr",
                     filename=f"{name}_lr_sensitivity",
                     caption="Objective against the learning rate of every tuning trial.")


main()
