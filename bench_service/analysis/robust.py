"""Robust aggregates across workloads, with the definitions of Agarwal et al. (2021),
``rliable``: normalised scores, IQM, median, optimality gap, probability of improvement,
and stratified bootstrap confidence intervals.

A cell's results form a runs × tasks matrix (seeds × workloads) of **normalised scores**: on
each workload 1 is the best result any cell reached and 0 the worst (a diverged trial already
carries the worst value, see ``data``), so every workload weighs the same whatever its units.

* IQM: the mean of the middle 50 % of all runs × tasks scores (``trim_mean`` at 25 %);
* median: the median over tasks of the per-task mean (rliable's ``aggregate_median``);
* optimality gap: ``γ − mean(min(score, γ))`` with γ = 1: how far below the best, on average;
* probability of improvement P(X > Y): per task the Mann–Whitney U / (n_x · n_y) (ties
  count half), averaged over tasks.

Intervals are percentile intervals of the **stratified bootstrap** (runs resampled with
replacement within each task, as rliable's ``StratifiedBootstrap``). The resampling is
vectorised: one index array of shape (resamples, runs, tasks) serves every cell, and each
statistic is computed for all cells and resamples in one numpy call, which is what keeps a
1,000-trial sweep under a second. rliable's point estimates are checked against these in the
tests (its bootstrap needs ``arch``, which does not import with pandas 3).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bench_service.analysis.data import oriented

RESAMPLES = 2000
SEED = 20240601
LEVEL = 0.95
AGGREGATE_COLUMNS = ["cell", "metric", "estimate", "ci_low", "ci_high", "runs", "tasks"]


def normalized(frame: pd.DataFrame, mode: str) -> pd.Series:
    """Each trial's score on its workload: 1 = the workload's best value, 0 = its worst."""
    lower = pd.Series(oriented(frame["value"], mode), index=frame.index)
    by = lower.groupby(frame["workload"])
    best, worst = by.transform("min"), by.transform("max")
    span = worst - best
    return ((worst - lower) / span.where(span > 0)).fillna(1.0)


def score_cube(frame: pd.DataFrame, mode: str) -> tuple[np.ndarray, list[str], list[str],
                                                       list[str]]:
    """Scores as a ``cells × runs × tasks`` array for the cells that have the same number of
    runs on every workload; returns ``(cube, cells, tasks, left_out)``.

    Runs are the seeds in order; a cell missing a seed on some workload is left out (the
    stratified bootstrap needs a complete matrix), and named in ``left_out``.
    """
    data = frame.assign(score=normalized(frame, mode))
    tasks = sorted(data["workload"].unique())
    counts = data.groupby(["cell", "workload"]).size().unstack("workload")
    runs = int(counts.max().max()) if len(counts) else 0
    complete = counts.notna().all(axis=1) & (counts == runs).all(axis=1)
    cells = sorted(counts.index[complete])
    left_out = sorted(counts.index[~complete])
    if not cells:
        return np.zeros((0, runs, len(tasks))), [], tasks, left_out
    part = data[data["cell"].isin(cells)].sort_values(["cell", "workload", "seed"])
    cube = part["score"].to_numpy("float64").reshape(len(cells), len(tasks), runs)
    return cube.transpose(0, 2, 1), cells, tasks, left_out


# --- the aggregate metrics on a (..., runs, tasks) array ----------------------------------
def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last two axes (``scipy.stats.trim_mean`` at 25 %)."""
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)
    return flat[..., cut: n - cut].mean(axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task mean over runs."""
    return np.median(scores.mean(axis=-2), axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean."""
    return scores.mean(axis=(-2, -1))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``γ − mean(min(score, γ))``: lower is better."""
    return gamma - np.minimum(scores, gamma).mean(axis=(-2, -1))


METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "IQM": iqm, "median": median, "mean": mean, "optimality_gap": optimality_gap,
}


def stratified_indices(runs: int, tasks: int, resamples: int = RESAMPLES,
                       seed: int = SEED) -> np.ndarray:
    """``(resamples, runs, tasks)`` run indices, drawn with replacement within each task."""
    return np.random.default_rng(seed).integers(0, runs, size=(resamples, runs, tasks))


def resample(cube: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``cube[c, idx[b, r, t], t]`` as a ``(cells, resamples, runs, tasks)`` array."""
    tasks = np.arange(cube.shape[-1])
    return cube[:, idx, tasks[None, None, :]]


def aggregates(frame: pd.DataFrame, mode: str, *, resamples: int = RESAMPLES,
               level: float = LEVEL) -> tuple[pd.DataFrame, list[str]]:
    """IQM, median, mean and optimality gap of every cell with stratified bootstrap CIs.

    With one run per task there is nothing to resample: the interval is NaN and a note says
    so. Returns ``(table, notes)``; the table has ``AGGREGATE_COLUMNS``.
    """
    cube, cells, tasks, left_out = score_cube(frame, mode)
    notes = []
    if left_out:
        notes.append(f"{len(left_out)} cell(s) without the same seeds on every workload are "
                     "left out of the robust aggregates: " + ", ".join(left_out[:8])
                     + (" ..." if len(left_out) > 8 else ""))
    if not cells:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS), notes
    runs = cube.shape[1]
    boot = None
    if runs >= 2:
        boot = resample(cube, stratified_indices(runs, len(tasks), resamples))
    else:
        notes.append("one seed per cell: no bootstrap interval for the aggregates")
    alpha = (1 - level) / 2
    rows = []
    for name, fn in METRICS.items():
        point = fn(cube)
        if boot is not None:
            lo, hi = np.quantile(fn(boot), [alpha, 1 - alpha], axis=1)
        else:
            lo = hi = np.full(len(cells), np.nan)
        rows.append(pd.DataFrame({"cell": cells, "metric": name, "estimate": point,
                                  "ci_low": lo, "ci_high": hi, "runs": runs,
                                  "tasks": len(tasks)}))
    return pd.concat(rows, ignore_index=True)[AGGREGATE_COLUMNS], notes


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of score arrays ``(..., runs_x, tasks)`` and ``(..., runs_y, tasks)``: per
    task the share of run pairs where X wins (ties half; rliable gives 0.5 to identical
    columns, which this reproduces), averaged over tasks."""
    gt = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    eq = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (gt + 0.5 * eq).mean(axis=-1)


def improvement_matrix(frame: pd.DataFrame, mode: str, cells: list[str] | None = None, *,
                       resamples: int = 500, level: float = LEVEL) -> pd.DataFrame:
    """P(row cell > column cell) with stratified bootstrap CIs, long form: ``x, y,
    probability, ci_low, ci_high``. ``cells``: which to compare (default: all complete)."""
    cube, all_cells, tasks, _ = score_cube(frame, mode)
    chosen = [c for c in (cells or all_cells) if c in all_cells]
    if not chosen:
        return pd.DataFrame(columns=["x", "y", "probability", "ci_low", "ci_high"])
    sub = cube[[all_cells.index(c) for c in chosen]]
    k, runs = len(chosen), sub.shape[1]
    point = probability_of_improvement(sub[:, None], sub[None, :])
    alpha = (1 - level) / 2
    if runs >= 2:
        bx = resample(sub, stratified_indices(runs, len(tasks), resamples, SEED + 1))
        by = resample(sub, stratified_indices(runs, len(tasks), resamples, SEED + 2))
        dist = probability_of_improvement(bx[:, None], by[None, :])  # k × k × resamples
        lo, hi = np.quantile(dist, [alpha, 1 - alpha], axis=-1)
    else:
        lo = hi = np.full((k, k), np.nan)
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return pd.DataFrame({"x": np.asarray(chosen)[ii.ravel()], "y": np.asarray(chosen)[jj.ravel()],
                         "probability": point.ravel(), "ci_low": lo.ravel(),
                         "ci_high": hi.ravel()})
