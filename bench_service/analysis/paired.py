"""Paired comparisons: every cell against its workload's best, seed by seed.

Cells of one sweep share their seeds (the same initialisation and batch order), so the fair
comparison of two cells is the per-seed difference, which removes the seed's own luck. For
each workload the best cell (best mean) is compared with every other: the mean paired
difference (``other − best``, in the objective's units), its 95 % Student-t interval, the
paired t-test's p-value and that p-value Holm-adjusted over the workload's comparisons.
With one common seed there is no interval and no test (said so, never a made-up number).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_service.analysis.data import oriented, seed_matrix
from bench_service.analysis.effects import holm

ALPHA = 0.05
PAIRED_COLUMNS = ["workload", "best", "cell", "diff", "ci_low", "ci_high", "n", "p", "p_holm",
                  "significant"]


def paired_stats(diffs: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Mean, t interval and two-sided paired t-test p of each column of ``diffs`` (NaN rows
    of a column are skipped); vectorised over the columns."""
    from scipy import stats

    d = np.asarray(diffs, dtype="float64")
    if d.ndim == 1:
        d = d[:, None]
    n = np.isfinite(d).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.nanmean(np.where(np.isfinite(d), d, np.nan), axis=0) if d.size else \
            np.full(d.shape[1], np.nan)
        sd = np.sqrt(np.nansum((d - m) ** 2, axis=0) / (n - 1))
        se = sd / np.sqrt(n)
        df = np.maximum(n - 1, 1)
        t_crit = stats.t.ppf(0.5 + level / 2, df)
        t = m / se
        p = 2 * stats.t.sf(np.abs(t), df)
    exact = se == 0
    p = np.where(exact, np.where(m == 0, 1.0, 0.0), p)
    few = n < 2
    half = t_crit * se
    return {"diff": m, "ci_low": np.where(few, np.nan, m - np.where(exact, 0.0, half)),
            "ci_high": np.where(few, np.nan, m + np.where(exact, 0.0, half)),
            "n": n, "p": np.where(few, np.nan, p)}


def versus_best(frame: pd.DataFrame, mode: str, alpha: float = ALPHA
                ) -> tuple[pd.DataFrame, list[str]]:
    """Per workload, every cell against the best one (see the module docstring)."""
    parts, notes = [], []
    for workload in sorted(frame["workload"].unique()):
        wide = seed_matrix(frame, workload)
        if wide.shape[1] < 2:
            continue
        means = pd.Series(oriented(wide.mean(axis=0), mode), index=wide.columns)
        best = str(means.idxmin())
        others = [c for c in wide.columns if c != best]
        d = wide[others].to_numpy() - wide[[best]].to_numpy()
        s = paired_stats(d)
        part = pd.DataFrame({"workload": workload, "best": best, "cell": others, **s})
        part["p_holm"] = holm(part["p"].to_numpy())
        part["significant"] = part["p_holm"].fillna(1.0) < alpha
        if (part["n"] < 2).all():
            notes.append(f"{workload}: one seed per cell: paired differences have no "
                         "confidence interval or p-value")
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=PAIRED_COLUMNS), notes
    out = pd.concat(parts, ignore_index=True)
    order = out["diff"].abs() if mode == "min" else -out["diff"]
    out = out.assign(_o=order).sort_values(["workload", "_o"]).drop(columns="_o")
    return out[PAIRED_COLUMNS].reset_index(drop=True), notes


def compare(frame: pd.DataFrame, workload: str, a: str, b: str) -> dict[str, float]:
    """The paired difference ``a − b`` on one workload: diff, ci_low, ci_high, n, p."""
    wide = seed_matrix(frame, workload)
    for cell in (a, b):
        if cell not in wide.columns:
            raise ValueError(f"no cell {cell!r} on workload {workload!r}; cells: "
                             + ", ".join(map(str, wide.columns)))
    s = paired_stats((wide[a] - wide[b]).to_numpy())
    return {k: float(v[0]) if k != "n" else int(v[0]) for k, v in s.items()}

