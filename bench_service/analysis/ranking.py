"""Rank statistics across workloads and seeds (Demšar 2006): Friedman, Nemenyi, and the
critical difference behind a CD diagram.

Each (workload, seed) is a block, each cell a treatment; within a block the cells are ranked
(1 = best, ties share the average rank), so results on different scales combine without
normalisation. Only cells present in every block take part (named otherwise).

* Friedman's χ² (``scipy.stats.friedmanchisquare``) asks whether any cell ranks differently
  from the others at all.
* Nemenyi's post-hoc test compares every pair: ``q = |R̄_i − R̄_j| / √(k(k+1)/(6N))`` and
  ``p = P(studentized range(k, ∞) > q·√2)``, which is what ``scikit-posthocs``'
  ``posthoc_nemenyi_friedman`` computes (the tests check it). Two cells whose mean ranks
  differ by less than the critical difference ``CD = q_α √(k(k+1)/(6N))`` are not told apart;
  the diagram joins them with a bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench_service.analysis.data import oriented

ALPHA = 0.05
#: Pairwise p-values are computed for at most this many best-ranked cells (each is a
#: numerical integral; the ranks themselves always use every cell).
PAIRWISE_MAX = 20


@dataclass(frozen=True)
class Ranking:
    """Mean ranks, Friedman's test, the critical difference and Nemenyi's pairwise p-values."""

    ranks: pd.DataFrame  # cell, mean_rank, blocks (sorted, best first)
    statistic: float
    p: float
    k: int
    blocks: int
    cd: float
    pairwise: pd.DataFrame  # x, y, p (Nemenyi), same (not told apart at alpha)
    cliques: list[list[str]]
    notes: list[str] = field(default_factory=list)


def block_matrix(frame: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, list[str]]:
    """Blocks (workload, seed) × cells of oriented values (lower is better), complete cells
    only; and the cells left out."""
    data = frame.assign(v=oriented(frame["value"], mode))
    wide = data.pivot_table(index=["workload", "seed"], columns="cell", values="v",
                            aggfunc="mean")
    complete = wide.columns[wide.notna().all(axis=0)]
    left = sorted(set(wide.columns) - set(complete))
    return wide[complete], left


def nemenyi_p(mean_ranks: np.ndarray, k: int, n: int) -> np.ndarray:
    """Nemenyi p-values of every pair of the given mean ranks (k cells in all, n blocks)."""
    from scipy.stats import studentized_range

    diff = np.abs(mean_ranks[:, None] - mean_ranks[None, :])
    q = diff / math.sqrt(k * (k + 1) / (6.0 * n))
    iu = np.triu_indices(len(mean_ranks), 1)
    p = np.ones_like(q)
    if iu[0].size:
        vals = studentized_range.sf(q[iu] * math.sqrt(2), k, np.inf)
        p[iu] = vals
        p[(iu[1], iu[0])] = vals
    return np.clip(p, 0.0, 1.0)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for k treatments on n blocks."""
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        return math.nan
    q_alpha = float(studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))


def cliques(ranks: pd.DataFrame, cd: float) -> list[list[str]]:
    """Maximal runs of cells (in rank order) whose mean ranks lie within ``cd``."""
    r = ranks["mean_rank"].to_numpy()
    names = ranks["cell"].tolist()
    out: list[list[str]] = []
    last_end = -1
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] <= cd:
            j += 1
        if j > i and j > last_end:
            out.append(names[i: j + 1])
            last_end = j
    return out


def friedman(frame: pd.DataFrame, mode: str, alpha: float = ALPHA) -> Ranking:
    """Friedman + Nemenyi over (workload, seed) blocks; see the module docstring."""
    from scipy import stats

    wide, left = block_matrix(frame, mode)
    notes = []
    if left:
        notes.append(f"{len(left)} cell(s) missing from some (workload, seed) block are left "
                     "out of the rank test: " + ", ".join(left[:8])
                     + (" ..." if len(left) > 8 else ""))
    n, k = wide.shape
    empty = pd.DataFrame(columns=["x", "y", "p", "same"])
    if k < 2 or n < 2:
        notes.append(f"rank test needs at least 2 cells and 2 blocks, got {k} and {n}")
        ranks = pd.DataFrame({"cell": list(wide.columns), "mean_rank": 1.0, "blocks": n})
        return Ranking(ranks, math.nan, math.nan, k, n, math.nan, empty, [], notes)
    r = wide.rank(axis=1, method="average")
    ranks = pd.DataFrame({"cell": wide.columns, "mean_rank": r.mean(axis=0).to_numpy(),
                          "blocks": n}).sort_values(["mean_rank", "cell"]).reset_index(drop=True)
    values = wide.to_numpy()
    if k >= 3:
        if np.all(values == values[:, :1]):
            stat, p = 0.0, 1.0
        else:
            res = stats.friedmanchisquare(*values.T)
            stat, p = float(res.statistic), float(res.pvalue)
    else:
        d = values[:, 0] - values[:, 1]
        if np.all(d == 0):
            stat, p = 0.0, 1.0
        else:
            res = stats.wilcoxon(values[:, 0], values[:, 1])
            stat, p = float(res.statistic), float(res.pvalue)
        notes.append("two cells: Wilcoxon signed-rank test instead of Friedman")
    cd = critical_difference(k, n, alpha)
    top = ranks.head(PAIRWISE_MAX)
    if len(ranks) > PAIRWISE_MAX:
        notes.append(f"pairwise Nemenyi p-values for the {PAIRWISE_MAX} best-ranked of {k} "
                     "cells")
    pm = nemenyi_p(top["mean_rank"].to_numpy(), k, n)
    cells = top["cell"].to_numpy()
    ii, jj = np.triu_indices(len(cells), 1)
    pairwise = pd.DataFrame({"x": cells[ii], "y": cells[jj], "p": pm[ii, jj]})
    pairwise["same"] = pairwise["p"] >= alpha
    return Ranking(ranks, stat, p, k, n, cd, pairwise, cliques(top, cd), notes)
