"""Tables behind the Leaderboard and Tuning pages, computed from ``trial_summaries`` frames.

Pure pandas on top of ``bench_service.sweep.stats`` (mean ± std, bootstrap percentile 95 % CI
that stays within the seeds' range, ranks, performance profiles), so the numbers here are the
ones ``bench results --best`` prints; ``n`` says how many finite values each rests on.
A diverged or failed seed has no finite objective: it counts as missing in the mean (and
is reported in its own column), never as a made-up number. Workloads are the trials'
``workload`` labels (``quadratic(condition=10)`` is its own problem), never re-derived.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench_service.dashboard.labels import metric_label
from bench_service.sweep.cost import cost_by_cell, equal_time_values
from bench_service.sweep.stats import CiMethod, performance_profile, ranks, summarize
from bench_service.vocab import AXES, TUNED_AXES, metric_mode

#: The axes that make a cell within a workload.
CELL_AXES = TUNED_AXES
#: How the leaderboards' confidence intervals are computed (see ``sweep.stats``).
CI_METHOD: CiMethod = "bootstrap"
#: Metrics never offered as objectives (they describe the run, not its quality).
_NOT_OBJECTIVES = frozenset({"lr"})
_TARGET = {"time_to_target": "time to target (s)", "step_to_target": "steps to target"}
#: Objectives read from a numeric trial column rather than the final/best dicts.
_COLUMNS = {**_TARGET, "objective": "tuning objective (as the tuner scored it)"}


@dataclass(frozen=True)
class Objective:
    """What to rank by: ``final``/``best`` value of a metric, or a time/steps to target."""

    key: str
    label: str
    mode: str  # "min" | "max"

    @property
    def metric(self) -> str:
        return self.key.split(":", 1)[-1]


def objectives(trials: pd.DataFrame) -> list[Objective]:
    """The objectives a sweep can be ranked by, most useful first.

    ``final:val_loss`` etc. for every metric found in the trials' ``final``/``best`` dicts
    (so a workload's own metrics such as ``val_perplexity`` appear too), then time and steps
    to the workload's target; first the tuner's own ``objective`` where trials have one (its
    mode is the sweep's, which the caller knows; ``min`` here).
    """
    names: set[str] = set()
    for column in ("final", "best"):
        for d in trials.get(column, pd.Series([], dtype=object)):
            if isinstance(d, Mapping):
                names.update(str(k) for k in d)
    names -= _NOT_OBJECTIVES
    preferred = ["val_loss", "val_accuracy", "val_perplexity", "train_loss"]
    ordered = [n for n in preferred if n in names] + sorted(names - set(preferred))
    out: list[Objective] = []
    for which in ("final", "best"):
        for name in ordered:
            out.append(Objective(f"{which}:{name}", f"{which} {metric_label(name)}",
                                 metric_mode(name)))
    for key, label in _TARGET.items():
        out.append(Objective(key, label, "min"))
    if "objective" in trials and pd.to_numeric(trials["objective"], errors="coerce").notna().any():
        out.insert(0, Objective("objective", _COLUMNS["objective"], "min"))
    return out


def objective_values(trials: pd.DataFrame, objective: str) -> pd.Series:
    """Each trial's value of ``objective`` (NaN where missing or not finite)."""
    if objective in _COLUMNS:
        values = pd.to_numeric(trials[objective], errors="coerce").astype("float64")
    else:
        which, _, name = objective.partition(":")
        if which not in ("final", "best") or not name:
            raise ValueError(f"unknown objective {objective!r}")
        values = pd.Series(
            [_finite(d.get(name)) if isinstance(d, Mapping) else math.nan
             for d in trials[which]],
            index=trials.index, dtype="float64",
        )
    return values.where(np.isfinite(values))


def _finite(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def ranked_trials(trials: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The trials a leaderboard compares, and a sentence saying which.

    A tuned sweep's tuning trials each try other hyperparameters, so ranking them together
    with the final runs would mix configurations: its ``final`` runs are ranked (with any
    ``imported`` published runs beside them). Otherwise every non-tuning trial.
    """
    if (trials["role"] == "final").any():
        return (trials[trials["role"].isin(["final", "imported"])],
                "final runs of each cell's best configuration")
    grid = trials[trials["role"] != "tuning"]
    if grid.empty:
        return grid, "no final runs yet (the sweep is still tuning)"
    return grid, "all seeds of every grid cell"


def cell_labels(trials: pd.DataFrame, *, with_workload: bool = False) -> pd.Series:
    """``adam/cosine/none`` per trial.

    Cells that share a label (the same algorithm names with different hyperparameters, such
    as a second SGD at ``lr: 50``) get the hyperparameters that tell them apart,
    ``sgd/constant/none [optimizer.lr=50]``, or a short ``#<cell_key>`` when nothing does.
    """
    if trials.empty:
        return pd.Series([], index=trials.index, dtype=object)
    axes = AXES if with_workload else CELL_AXES
    base = trials[axes[0]].astype(str)
    for axis in axes[1:]:  # vectorised: a row-wise join costs 0.2 s per 1,000 trials
        base = base + "/" + trials[axis].astype(str)
    scope = base if with_workload else trials["workload"].astype(str) + "|" + base
    suffix: dict[str, str] = {}
    cells = pd.DataFrame({"scope": scope, "cell": trials["cell_key"],
                          "params": trials.get("params")})
    for _, group in cells.drop_duplicates("cell").groupby("scope"):
        if len(group) < 2:
            continue
        flat = [flatten(p) if isinstance(p, Mapping) else {} for p in group["params"]]
        keys = sorted({k for f in flat for k in f})
        differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        for cell, f in zip(group["cell"], flat, strict=True):
            shown = ", ".join(f"{k}={f.get(k):g}" if isinstance(f.get(k), float)
                              else f"{k}={f.get(k)}" for k in differing[:2])
            suffix[cell] = f" [{shown}]" if shown else f" #{str(cell)[:6]}"
    return pd.Series(
        [b + suffix.get(k, "") for b, k in zip(base, trials["cell_key"], strict=True)],
        index=trials.index,
    )


def leaderboard(trials: pd.DataFrame, objective: str, mode: str,
                curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per workload and cell: mean ± std and 95 % CI over seeds, and the rank.

    Columns: ``workload, cell, cell_key, optimizer, scheduler, regularizer, rank, mean, std,
    ci_low, ci_high, n, seeds, diverged, failed, rank_time, mean_at_time, step_time_ms,
    vs_sgd, state_bytes``; ``n`` is the number of finite values the mean and CI rest on,
    ``seeds`` the number of runs. Sorted by workload and rank; rank 1 is the best mean (ties
    share a rank, cells without a finite value rank last). ``rank`` is at equal steps;
    ``rank_time`` at equal wall-clock (``sweep.cost``; from ``curves``: the objective's epoch
    points ``trial_id, wall_time, value``, NaN without them); ``vs_sgd`` is the step-time
    overhead relative to plain SGD on the same workload.
    """
    columns = ["workload", "cell", "cell_key", *CELL_AXES, "rank", "mean", "std", "ci_low",
               "ci_high", "n", "seeds", "diverged", "failed", "rank_time", "mean_at_time",
               "step_time_ms", "vs_sgd", "state_bytes"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    frame = trials.assign(
        value=objective_values(trials, objective), cell=cell_labels(trials)
    )
    rows: list[dict[str, Any]] = []
    for (workload, cell_key), g in frame.groupby(["workload", "cell_key"], sort=True):
        s = summarize(g["value"].tolist(), method=CI_METHOD)
        first = g.iloc[0]
        rows.append({
            "workload": workload, "cell": first["cell"], "cell_key": cell_key,
            **{a: first[a] for a in CELL_AXES},
            "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "n": s.n, "seeds": len(g), "diverged": int((g["status"] == "diverged").sum()),
            "failed": int((g["status"] == "failed").sum()),
        })
    board = pd.DataFrame(rows)
    board["rank"] = 0
    for _workload, g in board.groupby("workload"):
        r = ranks(dict(zip(g["cell_key"], g["mean"], strict=True)), mode)
        board.loc[g.index, "rank"] = [r[k] for k in g["cell_key"]]
    board["rank"] = board["rank"].astype("int64")
    _add_cost(board, frame, mode, curves)
    return board.sort_values(["workload", "rank", "cell"]).reset_index(drop=True)[columns]


def _add_cost(board: pd.DataFrame, trials: pd.DataFrame, mode: str,
              curves: pd.DataFrame | None) -> None:
    """The equal wall-clock rank and the step cost columns (``sweep.cost``), in place."""
    cost = cost_by_cell(trials)
    for c in ("step_time_ms", "vs_sgd", "state_bytes"):
        board[c] = [float(cost.at[k, c]) if k in cost.index else math.nan
                    for k in board["cell_key"]]
    board["mean_at_time"] = math.nan
    board["rank_time"] = pd.array([pd.NA] * len(board), dtype="Int64")
    if curves is None or curves.empty:
        return
    at_time, _ = equal_time_values(trials, curves, mode)
    for i, row in board.iterrows():
        ids = trials.loc[trials["cell_key"] == row["cell_key"], "trial_id"]
        board.at[i, "mean_at_time"] = summarize(
            [at_time.get(int(t), math.nan) for t in ids], method=CI_METHOD).mean
    for _workload, g in board.groupby("workload"):
        r = ranks(dict(zip(g["cell_key"], g["mean_at_time"], strict=True)), mode)
        board.loc[g.index, "rank_time"] = [r[k] for k in g["cell_key"]]


def distinct_curves(runs: pd.DataFrame, by: Sequence[str] = ("facet", "line")) -> pd.DataFrame:
    """One run per distinct curve within each ``by`` group, with ``runs``: how many share it.

    Seeds of one cell follow the same LR schedule, so a strip of 1,000 runs holds a handful of
    different curves; drawing each once keeps the chart light while every curve drawn is one
    that runs really followed. ``runs`` needs ``trial_id, x, y`` columns.
    """
    if runs.empty:
        return runs.assign(runs=pd.Series([], dtype="int64"))
    keys = [c for c in by if c in runs.columns]
    ordered = runs.sort_values(["trial_id", "x"], kind="stable")
    shapes = pd.Series({
        trial: np.round(g["x"].to_numpy(dtype="float64"), 9).tobytes()
        + np.round(g["y"].to_numpy(dtype="float64"), 15).tobytes()  # NaN-safe, exact
        for trial, g in ordered.groupby("trial_id", sort=False)
    }, name="shape", dtype=object)
    first = ordered.drop_duplicates("trial_id")[["trial_id", *keys]].merge(
        shapes, left_on="trial_id", right_index=True)
    count = first.groupby([*keys, "shape"])["trial_id"].transform("size").rename("runs")
    first = first.assign(runs=count.to_numpy())
    keep = first.drop_duplicates([*keys, "shape"])[["trial_id", "runs"]]
    return ordered.merge(keep, on="trial_id", how="inner")


def heatmap_matrix(board: pd.DataFrame, workload: str, regularizer: str) -> pd.DataFrame:
    """Mean objective of one workload and regularizer as an optimizer × scheduler table."""
    part = board[(board["workload"] == workload) & (board["regularizer"] == regularizer)]
    if part.empty:
        return pd.DataFrame()
    return part.pivot_table(
        index="optimizer", columns="scheduler", values="mean", aggfunc="mean", dropna=False
    )


def time_to_target(trials: pd.DataFrame) -> pd.DataFrame:
    """Per workload and cell: how many seeds reached the workload's target, and how fast.

    Columns: ``workload, cell, optimizer, scheduler, regularizer, reached, seeds,
    time_mean, time_ci_low, time_ci_high, steps_mean`` (means over the ``reached`` seeds; the
    CI stays within their times, never below 0 s).
    """
    columns = ["workload", "cell", *CELL_AXES, "reached", "seeds", "time_mean", "time_ci_low",
               "time_ci_high", "steps_mean"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    frame = trials.assign(cell=cell_labels(trials))
    rows = []
    for (workload, _key), g in frame.groupby(["workload", "cell_key"], sort=True):
        t = pd.to_numeric(g["time_to_target"], errors="coerce")
        steps = pd.to_numeric(g["step_to_target"], errors="coerce")
        s = summarize(t.dropna().tolist(), method=CI_METHOD)
        first = g.iloc[0]
        rows.append({
            "workload": workload, "cell": first["cell"], **{a: first[a] for a in CELL_AXES},
            "reached": int(t.notna().sum()), "seeds": len(g), "time_mean": s.mean,
            "time_ci_low": s.ci_low, "time_ci_high": s.ci_high,
            "steps_mean": float(steps.mean()) if steps.notna().any() else math.nan,
        })
    return pd.DataFrame(rows, columns=columns)


def profile(board: pd.DataFrame, mode: str, taus: Sequence[float]) -> pd.DataFrame:
    """Performance profile across workloads (``stats.performance_profile``) in long form.

    A cell is identified across workloads by its label (optimizer/scheduler/regularizer).
    Columns: ``cell, optimizer, scheduler, regularizer, tau, fraction``.
    """
    scores: dict[str, dict[str, float]] = {}
    for row in board.itertuples(index=False):
        scores.setdefault(str(row.workload), {})[str(row.cell)] = float(row.mean)
    prof = performance_profile(scores, list(taus), mode)
    meta = {row[0]: row[1:] for row in board.drop_duplicates("cell")[
        ["cell", *CELL_AXES]].itertuples(index=False)}
    cells = list(prof)
    n = len(taus)
    out = pd.DataFrame({
        "cell": np.repeat(cells, n),
        **{a: np.repeat([meta[c][i] for c in cells], n) for i, a in enumerate(CELL_AXES)},
        "tau": np.tile(np.asarray(taus, dtype="float64"), len(cells)),
        "fraction": np.concatenate([prof[c] for c in cells]) if cells else [],
    })
    return out[["cell", *CELL_AXES, "tau", "fraction"]]


def profile_scores(prof: pd.DataFrame) -> pd.DataFrame:
    """Area under each cell's profile over log τ, normalised to [0, 1] (AlgoPerf's score)."""
    out = []
    for cell, g in prof.groupby("cell", sort=False):
        tau = np.log(g["tau"].to_numpy(dtype="float64"))
        frac = g["fraction"].to_numpy(dtype="float64")
        span = tau[-1] - tau[0]
        area = float(np.sum((frac[1:] + frac[:-1]) / 2 * np.diff(tau)) / span) if span > 0 \
            else float(frac[-1])
        out.append({"cell": cell, "score": area})
    return pd.DataFrame(out, columns=["cell", "score"]).sort_values(
        "score", ascending=False).reset_index(drop=True)


# --------------------------------------------------------------------------- tuning


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` → ``{"optimizer.lr": 0.1}`` (the search-space names)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def tuning_table(trials: pd.DataFrame, objective: str, mode: str) -> pd.DataFrame:
    """The tuning trials with their objective, the best so far per cell and their params.

    Columns: ``trial_id, workload, cell, cell_key, optimizer, scheduler, regularizer,
    number, status, objective, best_so_far`` and one ``param:<name>`` column per flattened
    hyperparameter. Diverged and failed trials have no objective (NaN).
    """
    tuning = trials[trials["role"] == "tuning"].copy()
    if tuning.empty:
        return pd.DataFrame()
    tuning["cell"] = cell_labels(tuning)
    tuning["objective"] = objective_values(tuning, objective)
    tuning["number"] = pd.to_numeric(tuning["number"], errors="coerce")
    tuning["number"] = tuning["number"].fillna(
        tuning.groupby("cell_key").cumcount().astype("float64"))
    tuning = tuning.sort_values(["workload", "cell", "number"])
    running = tuning.groupby("cell_key")["objective"]
    tuning["best_so_far"] = running.cummin() if mode == "min" else running.cummax()
    params = pd.DataFrame([flatten(p) for p in tuning["params"]], index=tuning.index)
    params.columns = [f"param:{c}" for c in params.columns]
    keep = ["trial_id", "workload", "cell", "cell_key", *CELL_AXES, "number", "status",
            "objective", "best_so_far"]
    return pd.concat([tuning[keep], params], axis=1).reset_index(drop=True)


def varying_params(table: pd.DataFrame) -> list[str]:
    """Numeric hyperparameters that take more than one value among the tuning trials (the
    searched ones), ``optimizer.lr`` first."""
    names = []
    for column in table.columns:
        if not column.startswith("param:"):
            continue
        values = pd.to_numeric(table[column], errors="coerce").dropna()
        if values.nunique() > 1:
            names.append(column.removeprefix("param:"))
    return sorted(names, key=lambda n: (n != "optimizer.lr", not n.endswith(".lr"), n))


def log_scaled(values: Iterable[float]) -> bool:
    """Whether a hyperparameter's values are best shown on a log axis (all positive and
    spanning more than a factor of 20, as learning rates and penalties do)."""
    arr = np.asarray([v for v in values if v is not None], dtype="float64")
    arr = arr[np.isfinite(arr)]
    return bool(arr.size and (arr > 0).all() and arr.max() / arr.min() > 20)
