"""Every analysis of one sweep in one call, and the plain-language summary of what won.

``analyze`` is what ``bench analyze``, the dashboard's Analysis page and ``bench report``
share: it prepares the values once (``data.prepare``) and runs each analysis on them, so the
three show the same numbers. ``tables`` flattens the result into named DataFrames for
printing and download.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench_service.analysis import algoperf, budget, effects, paired, ranking, robust
from bench_service.analysis.data import Prepared, prepare


@dataclass(frozen=True)
class Analysis:
    """All analyses of one sweep (or one workload of it)."""

    sweep: str
    prepared: Prepared
    per_workload: dict[str, effects.Effects]
    cross: effects.CrossWorkload | None
    aggregates: pd.DataFrame
    improvement: pd.DataFrame
    ranking: ranking.Ranking
    paired: pd.DataFrame
    algoperf: pd.DataFrame
    profiles: pd.DataFrame
    budget: pd.DataFrame
    one_shot: pd.DataFrame
    lr: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    @property
    def workloads(self) -> list[str]:
        return sorted(self.prepared.frame["workload"].unique())


def analyze(trials: pd.DataFrame, *, sweep: str = "", spec: Mapping[str, Any] | None = None,
            objective: str | None = None, mode: str | None = None, workload: str | None = None,
            resamples: int = robust.RESAMPLES, top: int = 8) -> Analysis:
    """Run every analysis on a sweep's trials frame (``Store.trials_frame``).

    BLAS runs single-threaded meanwhile: the matrices here are small (hundreds of columns),
    where threads only add start-up and, on a busy machine, contention (a 170-column least
    squares took 1 s with OpenBLAS's threads on a loaded 2-core box and 27 ms without).

    Args:
        workload: Only this workload (then there is no cross-workload model, and it says so).
        top: How many best cells the probability-of-improvement matrix compares.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze(trials, sweep=sweep, spec=spec, objective=objective, mode=mode,
                        workload=workload, resamples=resamples, top=top)


def _analyze(trials: pd.DataFrame, *, sweep: str, spec: Mapping[str, Any] | None,
             objective: str | None, mode: str | None, workload: str | None,
             resamples: int, top: int) -> Analysis:
    if workload is not None:
        trials = trials[trials["workload"] == workload]
    prep = prepare(trials, objective, mode, spec=spec)
    frame, mode_ = prep.frame, prep.mode
    notes = list(prep.notes)
    if frame.empty:
        notes.append("no trial has a value for this objective yet: nothing to analyse")
    per = effects.per_workload(frame) if len(frame) else {}
    for w, e in per.items():
        notes += [f"{w}: {n}" for n in e.notes]
    seeds = frame.groupby(["workload", "cell"]).size()
    if len(seeds) and seeds.max() < 2:
        notes.append("one seed per cell: no confidence intervals and no paired tests")
    cross = effects.cross_workload(frame, mode_) if len(frame) else None
    if frame["workload"].nunique() == 1:
        notes.append("a single workload: no cross-workload model (effects are per workload)")
    elif cross is not None:
        notes += cross.notes
    aggs, agg_notes = robust.aggregates(frame, mode_, resamples=resamples) if len(frame) else \
        (pd.DataFrame(columns=robust.AGGREGATE_COLUMNS), [])
    notes += agg_notes
    iqm = aggs[aggs["metric"] == "IQM"].sort_values("estimate", ascending=False)
    improvement = robust.improvement_matrix(frame, mode_, iqm["cell"].head(top).tolist()) \
        if len(iqm) else pd.DataFrame(columns=["x", "y", "probability", "ci_low", "ci_high"])
    rank = ranking.friedman(frame, mode_) if len(frame) else ranking.Ranking(
        pd.DataFrame(columns=["cell", "mean_rank", "blocks"]), math.nan, math.nan, 0, 0,
        math.nan, pd.DataFrame(columns=["x", "y", "p", "same"]), [], [])
    notes += rank.notes
    pair, pair_notes = paired.versus_best(frame, mode_) if len(frame) else \
        (pd.DataFrame(columns=paired.PAIRED_COLUMNS), [])
    notes += pair_notes
    ap, profiles, ap_notes = algoperf.algoperf(frame) if len(frame) else \
        (pd.DataFrame(columns=algoperf.SCORE_COLUMNS), pd.DataFrame(), [])
    notes += ap_notes
    tuning = budget.tuning_values(trials, prep.objective, mode_)
    curves = budget.budget_curves(tuning, mode_)
    one_shot = budget.one_shot_vs_tuned(curves, frame, mode_)
    lr = budget.lr_sensitivity(tuning)
    result = Analysis(sweep, prep, per, cross, aggs, improvement, rank, pair, ap, profiles,
                      curves, one_shot, lr, list(dict.fromkeys(notes)), [])
    result.summary.extend(summarize(result))
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def summarize(a: Analysis) -> list[str]:
    """A few plain sentences: what explains the results, what won, how sure we are."""
    out: list[str] = []
    prep = a.prepared
    if prep.frame.empty:
        return ["No finished trial has a value for the objective yet."]
    direction = "lower" if prep.mode == "min" else "higher"
    out.append(f"Objective: {prep.objective} ({direction} is better), from {len(prep.frame)} "
               f"trials ({prep.which}) on {len(a.workloads)} workload(s).")
    if a.cross is not None and not a.cross.table.empty:
        shares = a.cross.table.set_index("term")["eta_sq"]
        out.append(effects.sentence(shares, "On these workloads") + ".")
        sig = a.cross.table[a.cross.table["significant"]]["term"].tolist()
        method = "mixed model" if a.cross.method == "mixed" else "rank-based test"
        out.append(f"Across workloads ({method}): " + (
            "significant terms: " + ", ".join(effects.describe_term(t) for t in sig)
            if sig else "no term is significant at 5 % (Holm)") + ".")
    for w, e in a.per_workload.items():
        t = e.table.set_index("term")
        if len(t) > 1:
            s = effects.sentence(t["eta_sq"], f"On {w}")
            sig = [x for x in t.index[t["significant"]] if ":" in x]
            extra = ("; interactions that matter: " + ", ".join(
                effects.describe_term(x) for x in sig)) if sig else ""
            out.append(s + extra + ".")
    iqm = a.aggregates[a.aggregates["metric"] == "IQM"].sort_values("estimate", ascending=False)
    if len(iqm):
        best = iqm.iloc[0]
        ci = "" if math.isnan(best["ci_low"]) else \
            f" (95 % CI {best['ci_low']:.2f}–{best['ci_high']:.2f})"
        out.append(f"Best cell overall: {best['cell']}, IQM normalised score "
                   f"{best['estimate']:.2f}{ci}.")
        if len(iqm) > 1:
            second = iqm.iloc[1]
            poi = a.improvement[(a.improvement["x"] == best["cell"])
                                & (a.improvement["y"] == second["cell"])]
            if len(poi):
                p = poi.iloc[0]
                band = "" if math.isnan(p["ci_low"]) else \
                    f" (95 % CI {p['ci_low']:.2f}–{p['ci_high']:.2f})"
                out.append(f"Probability that it beats the runner-up {second['cell']} on a "
                           f"workload: {p['probability']:.2f}{band}.")
    if math.isfinite(a.ranking.p):
        verdict = "differ" if a.ranking.p < 0.05 else "are not told apart"
        test = "Friedman" if a.ranking.k >= 3 else "Wilcoxon signed-rank"
        out.append(f"Ranks of {a.ranking.k} cells over {a.ranking.blocks} (workload, seed) "
                   f"blocks {verdict} ({test} p = {a.ranking.p:.3g}); critical difference "
                   f"{a.ranking.cd:.2f}.")
    for w, g in a.paired.groupby("workload"):
        sure = int(g["significant"].sum())
        out.append(f"On {w} the best cell is {g['best'].iloc[0]}; {sure} of {len(g)} others "
                   "are significantly worse (paired by seed, Holm-corrected).")
    if len(a.one_shot):
        gain = a.one_shot["gain_pct"].median()
        out.append(f"Tuning improved the objective by a median {gain:.0f} % over a single "
                   "trial.")
    return out


def tables(a: Analysis) -> dict[str, pd.DataFrame]:
    """The analysis as named tables (what ``bench analyze`` prints and the pages offer)."""
    eff = []
    for w, e in a.per_workload.items():
        eff.append(e.table.assign(workload=w))
    effects_table = pd.concat(eff, ignore_index=True) if eff else pd.DataFrame()
    if len(effects_table):
        effects_table = effects_table[["workload", *effects.EFFECT_COLUMNS]]
    cross = a.cross.table.assign(method=a.cross.method) if a.cross is not None else \
        pd.DataFrame()
    return {
        "effects": effects_table,
        "cross_workload": cross,
        "aggregates": a.aggregates,
        "improvement": a.improvement,
        "ranks": a.ranking.ranks,
        "pairwise_ranks": a.ranking.pairwise,
        "paired": a.paired,
        "algoperf": a.algoperf,
        "budget": a.budget,
        "one_shot_vs_tuned": a.one_shot,
        "lr_sensitivity": a.lr,
    }
