"""AlgoPerf's benchmark score on time-to-target and on steps-to-target.

Per workload a cell's time is the median over its seeds of the time to the workload's target,
a seed that never reached it counting as infinite (so a cell that reached it in fewer than
half its seeds is infinite too); a cell never reaching the target is infinite. Its
performance ratio is ``r = t / t_best`` (``∞`` above ``r_max``). The performance profile
``ρ(τ)`` is the share of workloads with ``r ≤ τ`` and the score is
``B = ∫₁^{r_max} ρ(τ) dτ / (r_max − 1)`` with ``r_max = 4`` (Dahl et al. 2023). ``ρ`` is a
step function, so the integral is exact: ``B = mean over workloads of
max(0, r_max − r) / (r_max − 1)``.

Wall-clock time rewards cheap steps, step counts reward progress per step; where the two
rankings disagree, an optimizer wins by being cheap rather than by needing fewer steps (or
the other way round), and the table says which cells move.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

R_MAX = 4.0
MEASURES = {"time": "time_to_target", "steps": "step_to_target"}
SCORE_COLUMNS = ["cell", "score_time", "score_steps", "rank_time", "rank_steps", "moves"]


def cell_times(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Workloads × cells of the median time (or steps) to target, ``inf`` where not reached."""
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    data = frame.assign(t=values.where(np.isfinite(values) & values.notna(), np.inf))
    wide = data.pivot_table(index="workload", columns="cell", values="t",
                            aggfunc=lambda s: float(np.median(s.to_numpy())))
    return wide.fillna(np.inf)


def ratios(times: pd.DataFrame, r_max: float = R_MAX) -> pd.DataFrame:
    """Performance ratios ``t / t_best`` per workload, ``inf`` above ``r_max`` (or where no
    cell reached the target)."""
    best = times.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = times.div(best.where(np.isfinite(best) & (best > 0)), axis=0)
        r = r.where(~((times == 0) & (best == 0)), 1.0)
    r = r.fillna(np.inf)
    return r.where(r <= r_max, np.inf)


def scores(r: pd.DataFrame, r_max: float = R_MAX) -> pd.Series:
    """``B`` of every cell from its ratios (exact integral of the step-function profile)."""
    contrib = np.maximum(0.0, r_max - r.to_numpy()) / (r_max - 1)
    contrib = np.where(np.isfinite(r.to_numpy()), contrib, 0.0)
    return pd.Series(contrib.mean(axis=0) if len(r) else np.zeros(r.shape[1]),
                     index=r.columns, name="score")


def profile(r: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """ρ(τ) of every cell in long form: ``cell, tau, rho``."""
    arr = r.to_numpy()
    rho = (arr[None, :, :] <= taus[:, None, None]).mean(axis=1)  # taus × cells
    return pd.DataFrame({"cell": np.tile(r.columns.to_numpy(), len(taus)),
                         "tau": np.repeat(taus, arr.shape[1]), "rho": rho.ravel()})


def algoperf(frame: pd.DataFrame, r_max: float = R_MAX, points: int = 61
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Scores on both measures, their ranks and which cells move; the profiles; notes.

    ``frame`` needs ``workload, cell, time_to_target, step_to_target`` per trial.
    Returns ``(scores, profiles, notes)``; ``profiles`` has ``measure, cell, tau, rho``.
    """
    notes: list[str] = []
    taus = np.linspace(1.0, r_max, points)
    out: dict[str, pd.Series] = {}
    profs = []
    for measure, column in MEASURES.items():
        if column not in frame:
            continue
        times = cell_times(frame, column)
        r = ratios(times, r_max)
        unreached = [str(w) for w, row in times.iterrows() if not np.isfinite(row).any()]
        if unreached and measure == "time":
            notes.append("no cell reached the target on " + ", ".join(unreached)
                         + ": those workloads add 0 to every score")
        out[measure] = scores(r, r_max)
        profs.append(profile(r, taus).assign(measure=measure))
    if not out:
        return pd.DataFrame(columns=SCORE_COLUMNS), pd.DataFrame(), notes
    table = pd.DataFrame({f"score_{m}": s for m, s in out.items()})
    table.index.name = "cell"
    table = table.reset_index()
    for m in out:
        table[f"rank_{m}"] = table[f"score_{m}"].rank(ascending=False, method="min").astype(int)
    if {"rank_time", "rank_steps"} <= set(table.columns):
        table["moves"] = table["rank_steps"] - table["rank_time"]
        moved = table[table["moves"] != 0]
        if len(moved):
            notes.append(f"time and steps rank {len(moved)} of {len(table)} cells differently"
                         f" (Kendall τ = {_kendall(table):.2f})")
        else:
            notes.append("time-to-target and steps-to-target give the same ranking")
    table = table.sort_values(["score_time" if "score_time" in table else table.columns[1],
                               "cell"], ascending=[False, True]).reset_index(drop=True)
    return table, pd.concat(profs, ignore_index=True)[["measure", "cell", "tau", "rho"]], notes


def _kendall(table: pd.DataFrame) -> float:
    from scipy.stats import kendalltau

    if len(table) < 2:
        return math.nan
    res = kendalltau(table["score_time"], table["score_steps"])
    return float(res.statistic) if np.isfinite(res.statistic) else 1.0
