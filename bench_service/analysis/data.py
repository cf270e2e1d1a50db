"""From a trials frame to the one table every analysis reads: one value per trial.

``prepare`` picks the trials a comparison may use (a tuned sweep's ``final`` runs, else every
grid trial), reads the objective of each and decides what a trial without a finite value
means, so that every analysis treats it the same way:

* a **diverged** or **failed** trial ran to an outcome that is bad, not unknown: it gets the
  workload's worst finite value (its cell is not flattered by dropping it) and is counted;
* a trial that has not ended (pending, running, cancelled, pruned) has no value at all; a
  cell none of whose trials has a value is left out, and said so.

The result's ``frame`` has the columns ``workload, cell, optimizer, scheduler, regularizer,
seed, value, status, imputed`` (``cell`` is ``optimizer/scheduler/regularizer``, the same
across workloads), which is also what the analysis functions accept, so tests and notebooks
can hand them a synthetic frame directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench_service.vocab import TUNED_AXES, metric_mode

#: The columns of a values frame.
VALUE_COLUMNS: tuple[str, ...] = ("workload", "cell", *TUNED_AXES, "seed", "value", "status",
                                  "imputed")
#: Statuses whose missing value means "as bad as it gets" (imputed with the worst value).
BAD_OUTCOMES = frozenset({"diverged", "failed"})
#: Objectives read from a numeric trial column rather than the final/best dicts.
COLUMN_OBJECTIVES = ("time_to_target", "step_to_target", "objective")


@dataclass(frozen=True)
class Prepared:
    """The values one analysis run rests on, and what was done to get them.

    Attributes:
        frame: One row per usable trial (``VALUE_COLUMNS``).
        objective: ``final:val_loss`` etc.
        mode: ``min`` or ``max``: which direction is better.
        which: A sentence naming the trials used.
        notes: Plain-language remarks (imputed values, cells left out) for every output.
        imputed: Per workload, how many diverged/failed trials got the worst value.
        dropped_cells: ``workload: cell`` of cells without any value (left out).
    """

    frame: pd.DataFrame
    objective: str
    mode: str
    which: str
    notes: list[str] = field(default_factory=list)
    imputed: dict[str, int] = field(default_factory=dict)
    dropped_cells: list[str] = field(default_factory=list)


def default_objective(spec: Mapping[str, Any] | None, trials: pd.DataFrame) -> tuple[str, str]:
    """The tuner's objective for a tuned sweep, else ``final:val_loss`` (else the first
    metric found in the trials' ``final`` dicts); with its mode."""
    tuning = (spec or {}).get("tuning")
    if isinstance(tuning, Mapping) and isinstance(tuning.get("objective"), Mapping):
        obj = tuning["objective"]
        metric = obj.get("metric")
        if isinstance(metric, str):
            key = metric if metric in COLUMN_OBJECTIVES else f"final:{metric}"
            return key, str(obj.get("mode") or metric_mode(metric))
    names: list[str] = []
    for d in trials.get("final", pd.Series([], dtype=object)):
        if isinstance(d, Mapping):
            names.extend(str(k) for k in d if k not in names)
    metric = "val_loss" if "val_loss" in names or not names else names[0]
    return f"final:{metric}", metric_mode(metric)


def objective_values(trials: pd.DataFrame, objective: str) -> pd.Series:
    """Each trial's value of ``objective`` (NaN where missing or not finite).

    Raises:
        ValueError: ``objective`` is neither a trial column nor ``final:``/``best:<metric>``.
    """
    if objective in COLUMN_OBJECTIVES:
        values = pd.to_numeric(trials[objective], errors="coerce").astype("float64")
    else:
        which, _, name = objective.partition(":")
        if which not in ("final", "best") or not name:
            raise ValueError(f"unknown objective {objective!r}; valid: final:<metric>, "
                             f"best:<metric>, {', '.join(COLUMN_OBJECTIVES)}")
        values = pd.Series([_finite(d.get(name)) if isinstance(d, Mapping) else math.nan
                            for d in trials[which]], index=trials.index, dtype="float64")
    return values.where(np.isfinite(values))


def _finite(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def compared_trials(trials: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The trials a comparison uses and a sentence saying which (a tuned sweep's tuning
    trials each try other hyperparameters: its ``final`` runs are compared)."""
    if (trials["role"] == "final").any():
        return trials[trials["role"] == "final"], "final runs of each cell's best configuration"
    grid = trials[trials["role"] != "tuning"]
    return grid, "all seeds of every grid cell"


def axis_levels(trials: pd.DataFrame) -> pd.DataFrame:
    """Factor levels per axis: the entry's name, or ``name#k`` where one name stands for
    several settings of that axis in a grid (``sgd`` at two learning rates are two levels).

    A tuned sweep's final runs differ in tuned hyperparameters cell by cell; those are one
    level (the name), since the tuning is part of what the level means.
    """
    out = trials[list(TUNED_AXES)].astype(str).copy()
    if (trials["role"] == "final").any() or "params" not in trials:
        return out
    for axis in TUNED_AXES:
        settings = [_setting(p, axis) for p in trials["params"]]
        pairs = pd.DataFrame({"name": out[axis], "setting": settings})
        for name, g in pairs.groupby("name"):
            distinct = list(dict.fromkeys(g["setting"]))
            if len(distinct) > 1:
                number = {s: i for i, s in enumerate(distinct)}
                out.loc[g.index, axis] = [f"{name}#{number[s] + 1}" for s in g["setting"]]
    return out


def _setting(params: Any, axis: str) -> str:
    """One axis's hyperparameters of a trial as comparable text (``""`` when absent)."""
    part = params.get(axis) if isinstance(params, Mapping) else None
    return repr(sorted(part.items())) if isinstance(part, Mapping) else ""


def prepare(
    trials: pd.DataFrame, objective: str | None = None, mode: str | None = None, *,
    spec: Mapping[str, Any] | None = None,
) -> Prepared:
    """The values frame of a sweep's trials (see the module docstring for the rules)."""
    key, default_mode = default_objective(spec, trials) if objective is None \
        else (objective, metric_mode(objective.partition(":")[2] or objective))
    mode = mode or default_mode
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    chosen, which = compared_trials(trials)
    values = objective_values(chosen, key) if len(chosen) else pd.Series([], dtype="float64")
    levels = axis_levels(chosen) if len(chosen) else chosen[list(TUNED_AXES)]
    frame = pd.DataFrame({
        "workload": chosen["workload"].astype(str),
        **{a: levels[a] for a in TUNED_AXES},
        "seed": pd.to_numeric(chosen["seed"], errors="coerce"),
        "value": values, "status": chosen["status"].astype(str),
        **{c: pd.to_numeric(chosen[c], errors="coerce").astype("float64")
           for c in ("time_to_target", "step_to_target") if c in chosen},
    })
    frame["cell"] = frame["optimizer"] + "/" + frame["scheduler"] + "/" + frame["regularizer"]
    bad = frame["value"].isna() & frame["status"].isin(BAD_OUTCOMES)
    frame["imputed"] = bad
    notes: list[str] = []
    imputed: dict[str, int] = {}
    for workload, g in frame.groupby("workload", sort=True):
        n_bad = int(g["imputed"].sum())
        if not n_bad:
            continue
        finite = g["value"].dropna()
        worst = (finite.max() if mode == "min" else finite.min()) if len(finite) else math.nan
        frame.loc[g.index[g["imputed"]], "value"] = worst
        imputed[str(workload)] = n_bad
        notes.append(f"{workload}: {n_bad} diverged/failed trial(s) counted at the workload's "
                     f"worst value ({worst:.4g})")
    has_value = frame.groupby(["workload", "cell"])["value"].transform(
        lambda v: v.notna().any())
    dropped = sorted({f"{w}: {c}" for w, c in frame.loc[~has_value, ["workload", "cell"]]
                      .itertuples(index=False)})
    if dropped:
        notes.append(f"{len(dropped)} cell(s) have no finished trial and are left out: "
                     + ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""))
    frame = frame[frame["value"].notna()]
    extra = [c for c in ("time_to_target", "step_to_target") if c in frame]
    frame = frame[[*VALUE_COLUMNS, *extra]].reset_index(drop=True)
    frame["seed"] = frame["seed"].astype("int64")
    return Prepared(frame, key, mode, which, notes, imputed, dropped)


def oriented(values: pd.Series | np.ndarray, mode: str) -> np.ndarray:
    """Values turned so that lower is better (``max`` objectives negated)."""
    arr = np.asarray(values, dtype="float64")
    return arr if mode == "min" else -arr


def seed_matrix(frame: pd.DataFrame, workload: str) -> pd.DataFrame:
    """Seeds × cells of one workload (NaN where a cell lacks a seed)."""
    part = frame[frame["workload"] == workload]
    return part.pivot_table(index="seed", columns="cell", values="value", aggfunc="mean")
