"""What tuning buys: budget curves, one-shot against tuned, and learning-rate sensitivity.

* **Budget curve** (Sivaprasad et al. 2020, "tunability"): the expected best objective after
  ``k`` tuning trials, ``k = 1..n``, if the cell's ``n`` tuning trials had come in a random
  order. It is estimated from random orderings (vectorised: one ``argsort`` of a random
  matrix per cell size) with a percentile band; its mean converges to the exact value
  ``Σ_i v_(i) · C(n−i, k−1) / C(n, k)`` (sorted best first), which the tests check. A steep
  curve needs a tuning budget; a flat one is robust to its hyperparameters.
* **One-shot against tuned** (Crowded Valley's question, Schmidt et al. 2021): what one trial
  gives (the curve at ``k = 1``: a single draw from the search space) against the tuned
  configuration (the mean of the final runs, or the best tuning trial when there are none).
* **LR sensitivity** (DeepOBS): the objective against the learning rate of every tuning trial.

A diverged or failed tuning trial counts as the worst tuning value of its workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench_service.analysis.data import BAD_OUTCOMES, objective_values, oriented

ORDERINGS = 1000
SEED = 7
BUDGET_COLUMNS = ["workload", "cell", "k", "expected_best", "ci_low", "ci_high", "trials"]


def tuning_values(trials: pd.DataFrame, objective: str, mode: str) -> pd.DataFrame:
    """The tuning trials: ``workload, cell, number, value, status, lr`` (worst value for a
    diverged/failed trial; ``lr`` = the optimizer's, NaN where none)."""
    t = trials[trials["role"] == "tuning"]
    if t.empty:
        return pd.DataFrame(columns=["workload", "cell", "number", "value", "status", "lr"])
    values = objective_values(t, objective)
    out = pd.DataFrame({
        "workload": t["workload"].astype(str),
        "cell": t["optimizer"].astype(str) + "/" + t["scheduler"].astype(str) + "/"
        + t["regularizer"].astype(str),
        "number": pd.to_numeric(t["number"], errors="coerce"),
        "value": values, "status": t["status"].astype(str),
        "lr": [_lr(p) for p in t.get("params", pd.Series([None] * len(t), index=t.index))],
    })
    out["number"] = out["number"].fillna(out.groupby("cell").cumcount().astype("float64"))
    bad = out["value"].isna() & out["status"].isin(BAD_OUTCOMES)
    for _w, g in out.groupby("workload"):
        finite = g["value"].dropna()
        if len(finite):
            worst = finite.max() if mode == "min" else finite.min()
            out.loc[g.index[bad[g.index]], "value"] = worst
    return out[out["value"].notna()].sort_values(["workload", "cell", "number"]).reset_index(
        drop=True)


def _lr(params: object) -> float:
    if isinstance(params, Mapping) and isinstance(params.get("optimizer"), Mapping):
        try:
            return float(params["optimizer"].get("lr"))
        except (TypeError, ValueError):
            return math.nan
    return math.nan


def expected_best_exact(values: np.ndarray, k: int) -> float:
    """E[best of k trials drawn without replacement from ``values``] (lower is better)."""
    v = np.sort(np.asarray(values, dtype="float64"))
    n = v.size
    w = np.array([math.comb(n - i, k - 1) for i in range(1, n + 1)], dtype="float64")
    return float((v * w).sum() / math.comb(n, k))


def budget_curves(tuning: pd.DataFrame, mode: str, orderings: int = ORDERINGS,
                  level: float = 0.95) -> pd.DataFrame:
    """Expected best after k trials per cell (``BUDGET_COLUMNS``), in the objective's units."""
    if tuning.empty:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    rng = np.random.default_rng(SEED)
    alpha = (1 - level) / 2
    parts = []
    groups = list(tuning.groupby(["workload", "cell"], sort=True))
    by_size: dict[int, list[tuple[tuple[str, str], np.ndarray]]] = {}
    for key, g in groups:
        by_size.setdefault(len(g), []).append((key, oriented(g["value"], mode)))
    for n, cells in by_size.items():
        perm = np.argsort(rng.random((orderings, n)), axis=1)
        v = np.stack([c[1] for c in cells])  # cells × n
        best = np.minimum.accumulate(v[:, perm], axis=2)  # cells × orderings × n
        mean = best.mean(axis=1)
        lo, hi = np.quantile(best, [alpha, 1 - alpha], axis=1)
        sign = 1.0 if mode == "min" else -1.0
        if mode == "max":
            lo, hi = hi, lo
        for i, ((workload, cell), _) in enumerate(cells):
            parts.append(pd.DataFrame({
                "workload": workload, "cell": cell, "k": np.arange(1, n + 1),
                "expected_best": sign * mean[i], "ci_low": sign * lo[i], "ci_high": sign * hi[i],
                "trials": n}))
    return pd.concat(parts, ignore_index=True)[BUDGET_COLUMNS]


def one_shot_vs_tuned(curves: pd.DataFrame, finals: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per cell: ``one_shot`` (curve at k = 1), ``tuned`` (mean of the final runs, else the
    curve at k = n), ``gain`` (how much better tuned is, in the objective's units, ≥ 0 when
    tuning helped) and ``gain_pct`` of the one-shot value."""
    if curves.empty:
        return pd.DataFrame(columns=["workload", "cell", "one_shot", "tuned", "gain",
                                     "gain_pct", "tuned_from"])
    first = curves[curves["k"] == 1].set_index(["workload", "cell"])["expected_best"]
    last = curves.sort_values("k").groupby(["workload", "cell"])["expected_best"].last()
    final_mean = finals.groupby(["workload", "cell"])["value"].mean() if len(finals) else \
        pd.Series(dtype="float64")
    rows = []
    for key, one in first.items():
        has_final = key in final_mean.index
        tuned = float(final_mean[key]) if has_final else float(last[key])
        gain = (one - tuned) if mode == "min" else (tuned - one)
        rows.append({"workload": key[0], "cell": key[1], "one_shot": float(one), "tuned": tuned,
                     "gain": gain, "gain_pct": 100 * gain / abs(one) if one else math.nan,
                     "tuned_from": "final runs" if has_final else "best tuning trial"})
    return pd.DataFrame(rows)


def lr_sensitivity(tuning: pd.DataFrame) -> pd.DataFrame:
    """``workload, cell, lr, value`` of every tuning trial with a learning rate."""
    return tuning.loc[tuning["lr"].notna(), ["workload", "cell", "lr", "value", "status"]
                      ].sort_values(["workload", "cell", "lr"]).reset_index(drop=True)
