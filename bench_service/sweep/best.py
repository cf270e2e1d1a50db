"""The leaderboard: per cell, the best config and how well it does across seeds.

For a tuned sweep the seeds are the cell's final runs of its best config; for a plain grid
they are the grid's seeds. Each cell gets mean ± std and a 95% bootstrap percentile
confidence interval of the objective (it stays within the seeds' range: a loss interval never
goes below zero), ``n``, the number of finite values they rest on, and its rank among the
cells of its workload.

A workload is what the trial's ``workload`` column says: the planner stores a readable label
there (``quadratic`` with default parameters, ``quadratic(condition=10)`` otherwise), so two
configurations of one registered workload are two problems, ranked apart. The tuning
columns are the tuner's own counts (``bench_cells``), what the budget counts, not the number
of tuning rows (a trial lost in a crash and run again is one trial of the budget).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench_service.sweep.cost import cost_by_cell, equal_time_values
from bench_service.sweep.stats import ranks, summarize
from bench_service.vocab import TUNED_AXES, metric_mode

if TYPE_CHECKING:
    from bench_service.store import Store

BEST_COLUMNS = [
    "rank", "workload", "optimizer", "scheduler", "regularizer", "objective", "mean", "std",
    "ci95_low", "ci95_high", "n", "n_seeds", "n_diverged", "rank_time", "mean_at_time",
    "time_budget_s", "step_time_ms", "vs_sgd", "state_bytes", "peak_memory_bytes",
    "best_params", "tuning_trials", "tuning_pruned", "tuning_cpu_seconds", "cell_key",
]
#: Columns of the equal wall-clock ranking and of the step cost (``sweep.cost``).
TIME_COLUMNS = ["rank_time", "mean_at_time", "time_budget_s"]
COST_COLUMNS = ["step_time_ms", "vs_sgd", "state_bytes", "peak_memory_bytes"]


def _format_params(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()))


def _objective(spec: dict[str, Any]) -> tuple[str, str]:
    tuning = spec.get("tuning") or {}
    obj = tuning.get("objective") or {}
    metric = obj.get("metric", "val_loss")
    return metric, obj.get("mode") or metric_mode(metric)


def _value(row: Any, metric: str, mode: str) -> float:
    if row.status == "diverged":
        return math.inf if mode == "min" else -math.inf
    if metric == "time_to_target":
        v = row.time_to_target
    else:
        v = (row.final or {}).get(metric) if isinstance(row.final, dict) else None
    return float(v) if v is not None and not pd.isna(v) else math.nan


def best_table(store: Store, sweep: str, **filters: Any) -> pd.DataFrame:
    """One row per cell, ranked within each workload label by the mean objective over seeds.

    Columns: ``BEST_COLUMNS`` (a plain grid has no ``tuning_*`` ones). ``n`` is how many
    seeds have a finite objective (what mean, std and CI rest on), ``n_seeds`` how many ran,
    ``n_diverged`` how many diverged. ``rank`` is at equal steps (the end of the budget),
    ``rank_time`` at equal wall-clock (``mean_at_time``: the objective at the workload's
    ``time_budget_s``, see ``sweep.cost``); ``step_time_ms`` is the cell's median optimizer
    step, ``vs_sgd`` its ratio to plain SGD's on the same workload.
    """
    from bench_service.store import StoreError

    info = store.get_sweep(sweep)
    if info is None:
        store.trials_frame(sweep)  # raises the store's "unknown sweep" error with suggestions
        raise StoreError(f"unknown sweep {sweep!r}")
    metric, mode = _objective(info.spec)
    tuned = bool(info.spec.get("tuning"))
    trials = store.trials_frame(sweep, role="final" if tuned else "grid", **filters)
    cells = store.cells_frame(sweep).set_index("cell_key") if tuned else pd.DataFrame()
    rows: list[dict[str, Any]] = []
    timed = metric != "time_to_target" and not trials.empty
    at_time: dict[int, float] = {}
    budgets: dict[str, float] = {}
    if timed:
        curves = store.curves_frame(sweep, names=[metric], scope="epoch",
                                    role="final" if tuned else "grid", **filters)
        at_time, budgets = equal_time_values(trials, curves, mode)
    cost = cost_by_cell(trials) if not trials.empty else pd.DataFrame()
    for key, group in trials.groupby("cell_key", sort=False):
        values = [_value(r, metric, mode) for r in group.itertuples()]
        timed_s = summarize([at_time.get(int(t), math.nan) for t in group["trial_id"]],
                            method="bootstrap") if timed else None
        cell_cost = cost.loc[key] if key in cost.index else None
        s = summarize(values, method="bootstrap")
        first = group.iloc[0]
        cell = cells.loc[key] if tuned and key in cells.index else None
        params = cell["best_params"] if cell is not None else {
            f"{axis}.{k}": v for axis in TUNED_AXES
            for k, v in (first["params"].get(axis) or {}).items()
            if v is not None and k != "interval"  # derived or bookkeeping, not a choice
        }
        rows.append({
            "workload": first["workload"], "optimizer": first["optimizer"],
            "scheduler": first["scheduler"], "regularizer": first["regularizer"],
            "objective": f"{metric} ({mode})", "mean": s.mean, "std": s.std,
            "ci95_low": s.ci_low, "ci95_high": s.ci_high, "n": s.n, "n_seeds": len(group),
            "n_diverged": int((group["status"] == "diverged").sum()),
            "rank_time": 0,
            "mean_at_time": timed_s.mean if timed_s is not None else math.nan,
            "time_budget_s": budgets.get(str(first["workload"]), math.nan),
            **{c: float(cell_cost[c]) if cell_cost is not None else math.nan
               for c in COST_COLUMNS},
            "best_params": _format_params(params),
            "tuning_trials": int(cell["n_tuning"]) if cell is not None else None,
            "tuning_pruned": int(cell["n_pruned"]) if cell is not None else None,
            "tuning_cpu_seconds": float(cell["tuning_cpu_seconds"] or 0.0)
            if cell is not None else None,
            "cell_key": key,
        })
    table = pd.DataFrame(rows, columns=[c for c in BEST_COLUMNS if c != "rank"])
    table.insert(0, "rank", 0)
    for _, idx in table.groupby("workload").groups.items():
        sub = table.loc[idx]
        r = ranks({k: m for k, m in zip(sub["cell_key"], sub["mean"], strict=True)}, mode)
        table.loc[idx, "rank"] = [r[k] for k in sub["cell_key"]]
        r_time = ranks(dict(zip(sub["cell_key"], sub["mean_at_time"], strict=True)), mode)
        table.loc[idx, "rank_time"] = [r_time[k] for k in sub["cell_key"]]
    if not timed:
        table = table.drop(columns=TIME_COLUMNS)
    if not tuned:  # a plain grid has no tuning cost to show
        table = table.drop(columns=["tuning_trials", "tuning_pruned", "tuning_cpu_seconds"])
    return table.sort_values(["workload", "rank"], kind="stable").reset_index(drop=True)
