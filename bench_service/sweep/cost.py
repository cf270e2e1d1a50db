"""Ranking at equal wall-clock, and what a step costs relative to SGD.

AlgoPerf's lesson: ranked by steps, an optimizer whose steps cost more looks better than it
is (Muon drops from third to sixth when its runs are ranked by time). So the leaderboard
ranks twice:

- **at equal steps**: the objective at the end of the budget (every cell ran the same steps);
- **at equal wall-clock**: per workload, the time budget ``T`` is the shortest cell's run
  (median over its seeds of the wall time of its last evaluation); every trial is scored by
  the objective at its last evaluation at or before ``T`` (none by then: no value, it ranks
  last), and cells are ranked by the mean of that over their seeds.

Step-time overhead is a cell's median ``step_time_mean`` over the median of the workload's
``sgd`` cells (NaN where the sweep ran no plain SGD on that workload).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: The baseline the step-time overhead is relative to.
BASELINE_OPTIMIZER = "sgd"


def _median(values: Any) -> float:
    series = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    return float(series.median()) if len(series) else math.nan


def cost_by_cell(trials: pd.DataFrame) -> pd.DataFrame:
    """Per ``cell_key``: ``step_time_ms``, ``vs_sgd``, ``state_bytes``, ``peak_memory_bytes``.

    ``trials`` needs ``cell_key, workload, optimizer, step_time_mean,
    optimizer_state_bytes, peak_memory_bytes`` (missing cost columns read as unmeasured).
    """
    rows = []
    for key, g in trials.groupby("cell_key", sort=False):
        rows.append({
            "cell_key": key, "workload": g["workload"].iloc[0],
            "optimizer": g["optimizer"].iloc[0],
            "step_time_ms": 1e3 * _median(g.get("step_time_mean", [])),
            "state_bytes": _median(g.get("optimizer_state_bytes", [])),
            "peak_memory_bytes": _median(g.get("peak_memory_bytes", [])),
        })
    cost = pd.DataFrame(rows, columns=["cell_key", "workload", "optimizer", "step_time_ms",
                                       "state_bytes", "peak_memory_bytes"])
    base = cost[cost["optimizer"] == BASELINE_OPTIMIZER].groupby("workload")["step_time_ms"]
    baseline = base.median().to_dict()
    cost["vs_sgd"] = [
        t / baseline[w] if baseline.get(w) and math.isfinite(baseline[w]) else math.nan
        for t, w in zip(cost["step_time_ms"], cost["workload"], strict=True)
    ]
    return cost.set_index("cell_key")[["step_time_ms", "vs_sgd", "state_bytes",
                                      "peak_memory_bytes"]]


def equal_time_values(
    trials: pd.DataFrame, curves: pd.DataFrame, mode: str
) -> tuple[dict[int, float], dict[str, float]]:
    """Each trial's objective at its workload's equal wall-clock budget, and the budgets.

    ``trials``: ``trial_id, workload, cell_key, status``; ``curves``: the objective metric's
    epoch points, ``trial_id, wall_time, value``. A diverged trial scores the worst value
    (like at equal steps); a trial not evaluated by ``T`` scores NaN.
    """
    worst = math.inf if mode == "min" else -math.inf
    by_trial = {int(t): g.sort_values("wall_time") for t, g in curves.groupby("trial_id")}
    budgets: dict[str, float] = {}
    for workload, g in trials.groupby("workload", sort=False):
        ends = []
        for _key, cell in g.groupby("cell_key", sort=False):
            last = [float(by_trial[int(t)]["wall_time"].iloc[-1]) for t in cell["trial_id"]
                    if int(t) in by_trial and not by_trial[int(t)].empty]
            if last:
                ends.append(_median(last))
        budgets[str(workload)] = min(ends) if ends else math.nan
    values: dict[int, float] = {}
    for row in trials.itertuples():
        tid = int(row.trial_id)
        budget = budgets.get(str(row.workload), math.nan)
        if row.status == "diverged":
            values[tid] = worst
            continue
        points = by_trial.get(tid)
        if points is None or not math.isfinite(budget):
            values[tid] = math.nan
            continue
        before = points[points["wall_time"] <= budget + 1e-9]
        values[tid] = float(before["value"].iloc[-1]) if len(before) else math.nan
    return values, budgets
