"""Equal-budget tuning with Optuna: one study per grid cell, stored beside the results.

Every cell (workload × optimizer × scheduler × regularizer) gets ``trials_per_cell`` trials of
its own study, in the sweep's own database through Optuna's RDB storage, so that
``optuna-dashboard <db-url>`` shows them and a resumed sweep continues each study. This module
holds the Optuna side (samplers, pruners, spaces, objective values, the budget rule); the Ray
side that runs trials in parallel lives in ``bench_service.cluster.tuning``.

The budget rule, for fairness (DeepOBS, Crowded Valley, AlgoPerf): completed, pruned, diverged
and failed trials all count against a cell's budget; only trials lost to the infrastructure
(a driver killed mid-trial, a node lost after Ray's retries) are failed *uncounted* and
replaced, so no cell ever gets more or fewer real trials than the others.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from bench_service.engine.config import Component, TrialConfig
from bench_service.sweep.plan import PlannedCell
from bench_service.sweep.spec import TuningSpec
from bench_service.vocab import TUNED_AXES

optuna.logging.set_verbosity(logging.WARNING)

#: User attribute marking whether a finished Optuna trial counts against the cell's budget.
COUNTED = "bench_counted"
#: User attribute holding the bench_trials row id of an Optuna trial.
TRIAL_ID = "bench_trial_id"
#: Longest study name: Optuna's ``studies.study_name`` holds 512 characters (enforced by
#: PostgreSQL and MySQL) and ``bench_cells.study_name`` 500.
MAX_STUDY_NAME = 500
#: Longest cell label stored in ``bench_cells.label``.
MAX_CELL_LABEL = 400


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and a hash of all of it.

    The hash keeps two long names that share their head apart; a name that fits is left as
    it is, so what is already stored under it is found again.
    """
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[:limit - len(digest) - 1]}~{digest}"


def study_name(sweep: str, cell: PlannedCell) -> str:
    """``<sweep>/<cell label>``: readable in optuna-dashboard, unique within the database;
    shortened with a hash suffix where it would not fit the storage (``MAX_STUDY_NAME``)."""
    return shorten(f"{sweep}/{cell.label}", MAX_STUDY_NAME)


def cell_seed(cell_key: str, tune_seed: int) -> int:
    """A sampler seed per cell: reproducible, and different cells explore differently."""
    digest = hashlib.sha256(f"{cell_key}:{tune_seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, BaseDistribution]:
    """Optuna distributions of a cell's search space (``"optimizer.lr" -> {low, high, log}``)."""
    out: dict[str, BaseDistribution] = {}
    for name, rng in space.items():
        if "choices" in rng:
            out[name] = CategoricalDistribution(list(rng["choices"]))
        elif rng.get("kind") == "int":
            out[name] = IntDistribution(int(rng["low"]), int(rng["high"]),
                                        log=bool(rng.get("log")))
        else:
            out[name] = FloatDistribution(float(rng["low"]), float(rng["high"]),
                                          log=bool(rng.get("log")))
    return out


def _grid(space: Mapping[str, BaseDistribution], budget: int) -> dict[str, list[Any]]:
    """Grid points for GridSampler: ~budget^(1/d) values per dimension (log-spaced for log)."""
    dims = max(1, len(space))
    k = max(2, round(budget ** (1.0 / dims)))
    grid: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
            continue
        assert isinstance(dist, (FloatDistribution, IntDistribution))
        lo, hi = float(dist.low), float(dist.high)
        if dist.log:
            pts = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (k - 1))
                   for i in range(k)]
        else:
            pts = [lo + (hi - lo) * i / (k - 1) for i in range(k)]
        pts = [min(max(p, lo), hi) for p in pts]  # exp(log(hi)) may round past hi
        grid[name] = sorted({round(p) for p in pts}) if isinstance(
            dist, IntDistribution) else pts
    return grid


def make_sampler(tuning: TuningSpec, cell: PlannedCell) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded per cell."""
    # QMCSampler is marked experimental by Optuna; its behaviour is pinned by our tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make_sampler(tuning, cell)


def _make_sampler(tuning: TuningSpec, cell: PlannedCell) -> optuna.samplers.BaseSampler:
    seed = cell_seed(cell.cell_key, tuning.tune_seed)
    budget = tuning.trials_per_cell
    name = tuning.sampler
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":  # quasi-random Sobol, as AlgoPerf's external tuning
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                          warn_independent_sampling=False)
    if name == "grid":
        return BudgetGridSampler(_grid(distributions(cell.search_space), budget), seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False,
                                            n_startup_trials=min(3, budget))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3)))


class BudgetGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask-and-tell: the cell's budget, not the grid, ends a study.

    ``GridSampler.after_trial`` calls ``study.stop()`` once every grid point was tried, which
    raises ``RuntimeError`` outside ``study.optimize`` (always the case here, and at once for
    an empty search space: its grid is one point). The driver stops asking when the budget is
    spent; a budget larger than the grid samples grid points again, which is what such a
    spec asks for, so Optuna's warning that this "may happen due to a timing issue" is muted.
    """

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        grid_logger = logging.getLogger("optuna.samplers._grid")
        level = grid_logger.level
        grid_logger.setLevel(logging.ERROR)
        try:
            super().before_trial(study, trial)
        finally:
            grid_logger.setLevel(level)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Nothing to do: see the class docstring."""


def make_pruner(tuning: TuningSpec, epochs: int) -> optuna.pruners.BasePruner:
    """The spec's pruner; steps are epochs (pruning acts on the per-epoch validation metric)."""
    budget = tuning.trials_per_cell
    if tuning.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, budget // 4),
                                           n_warmup_steps=1)
    if tuning.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if tuning.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def pruning_metric(tuning: TuningSpec) -> str:
    """The per-epoch metric reported to the pruner (time-to-target prunes on val_loss)."""
    metric = tuning.objective.metric
    return "val_loss" if metric == "time_to_target" else metric


def worst(mode: str) -> float:
    return math.inf if mode == "min" else -math.inf


def objective_value(status: str, final: Mapping[str, float] | None,
                    time_to_target: float | None, tuning: TuningSpec) -> float:
    """A finished trial's objective: the metric's final (last-epoch) value.

    Diverged trials, and trials that never produced the metric, get the worst value (±inf)
    rather than being dropped: a setting that blows up is a bad setting, and it still spent
    budget.
    """
    metric, mode = tuning.objective.metric, tuning.objective.mode
    if status == "diverged":
        return worst(mode)
    value = time_to_target if metric == "time_to_target" else (final or {}).get(metric)
    if value is None or not math.isfinite(float(value)):
        return worst(mode)
    return float(value)


def pruned_value(trial: FrozenTrial) -> float | None:
    """The value Optuna gives a trial told ``PRUNED``: its last intermediate value (``None``
    without one, or when that is NaN). The stored objective of a pruned trial is this value,
    so the results and the study agree."""
    step = trial.last_step
    if step is None:
        return None
    value = float(trial.intermediate_values[step])
    return None if math.isnan(value) else value


def config_for(cell: PlannedCell, params: Mapping[str, Any], seed: int) -> TrialConfig:
    """The cell's config with sampled (or best) hyperparameters and the given seed."""
    cfg = cell.config
    changes: dict[str, Any] = {"seed": seed}
    for axis in TUNED_AXES:
        prefix = f"{axis}."
        picked = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        if picked:
            comp: Component = getattr(cfg, axis)
            changes[axis] = Component(comp.name, {**comp.params, **picked})
    return replace(cfg, **changes)


def tuning_hash(cell_key: str, number: int) -> str:
    """Identity of the cell's tuning trial ``number`` (Optuna may sample equal configs)."""
    return hashlib.sha256(f"{cell_key}:tuning:{number}".encode()).hexdigest()


def final_hash(config: TrialConfig) -> str:
    """Identity of a final (best-config) run: its config and seed, in the final role."""
    return hashlib.sha256(f"final:{config.config_hash()}".encode()).hexdigest()


def counted(trial: FrozenTrial) -> bool:
    """Whether a finished trial spent the cell's budget (see the module docstring)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(COUNTED, True))


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The finished trials that spent the cell's budget (a lost-and-replaced one does not)."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and counted(t)]


def budget_used(study: optuna.Study) -> int:
    return len(counted_trials(study))


def best_params(study: optuna.Study, mode: str) -> tuple[dict[str, Any], float] | None:
    """The best counted trial's params and value (ties: the earliest), or ``None``."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None]
    if not done:
        return None
    sign = 1.0 if mode == "min" else -1.0
    def key(t: FrozenTrial) -> tuple[float, int]:
        v = float(t.value) if t.value is not None else math.nan
        return (sign * v if math.isfinite(v) else math.inf, t.number)

    best = min(done, key=key)
    return dict(best.params), float(best.value or 0.0) if best.value is not None else math.nan


def importance(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's parameter importances (fANOVA), or ``None`` when there is too little data."""
    finite = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.value is not None and math.isfinite(t.value)]
    if len(finite) < 3 or not finite[0].params:
        return None
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                      target=lambda t: float(t.value or 0.0))
    except (ImportError, RuntimeError, ValueError, ZeroDivisionError):
        return None  # too little signal, or scikit-learn missing: the page says "n/a"
    return {k: float(v) for k, v in imp.items()}
