"""The Optuna side of tuning: spaces, samplers, objective values and the budget rule."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from bench_service.sweep import parse_spec, plan_sweep
from bench_service.sweep import tuning as T
from bench_service.sweep.stats import performance_profile, ranks, summarize, t_critical

SPEC = {
    "name": "t", "workloads": ["linreg"], "optimizers": ["sgd", {"name": "adam",
                                                                  "params": {"beta2": 0.99}}],
    "schedulers": [{"name": "step", "params": {"step_size": 2}}], "budget": {"epochs": 4},
    "tuning": {"trials_per_cell": 9, "sampler": "tpe", "final_seeds": [0, 1, 2],
               "search_space": {"step": {"gamma": {"low": 0.2, "high": 0.8}}}},
}


def plan(**tuning: object):
    spec = {**SPEC, "tuning": {**SPEC["tuning"], **tuning}}  # type: ignore[dict-item]
    return plan_sweep(parse_spec(spec))


def test_space_tunes_declared_ranges_keeps_fixed_params_fixed() -> None:
    p = plan()
    adam = next(c for c in p.cells if c.optimizer == "adam")
    dists = T.distributions(adam.search_space)
    assert isinstance(dists["optimizer.lr"], FloatDistribution) and dists["optimizer.lr"].log
    assert "optimizer.beta2" not in dists  # fixed in the axis entry
    assert "optimizer.beta1" in dists
    assert dists["scheduler.gamma"] == FloatDistribution(0.2, 0.8)  # the spec's override
    assert "scheduler.step_size" not in dists  # fixed


def test_config_for_applies_sampled_params_to_their_axes() -> None:
    cell = next(c for c in plan().cells if c.optimizer == "adam")
    cfg = T.config_for(cell, {"optimizer.lr": 0.02, "scheduler.gamma": 0.5}, seed=7)
    assert cfg.seed == 7
    assert cfg.optimizer.params == {"beta2": 0.99, "lr": 0.02}
    assert cfg.scheduler.params == {"step_size": 2, "gamma": 0.5}
    assert cfg.workload == cell.config.workload


@pytest.mark.parametrize(("sampler", "cls"), [
    ("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
    ("qmc", optuna.samplers.QMCSampler), ("grid", optuna.samplers.GridSampler),
    ("cmaes", optuna.samplers.CmaEsSampler),
])
def test_every_sampler_builds_and_samples_inside_the_space(sampler: str, cls: type) -> None:
    p = plan(sampler=sampler)
    cell = p.cells[0]
    s = T.make_sampler(p.spec.tuning, cell)
    assert isinstance(s, cls)
    study = optuna.create_study(sampler=s)
    dists = T.distributions(cell.search_space)
    for _ in range(4):
        trial = study.ask(dists)
        assert 1e-5 <= trial.params["optimizer.lr"] <= 1.0
        study.tell(trial, (math.log10(trial.params["optimizer.lr"]) + 2) ** 2)


def test_grid_has_about_budget_points() -> None:
    grid = T._grid({"a": FloatDistribution(1e-3, 1.0, log=True),
                    "b": IntDistribution(1, 4), "c": CategoricalDistribution(["x", "y"])}, 8)
    assert grid["a"][0] == pytest.approx(1e-3) and grid["a"][-1] == pytest.approx(1.0)
    assert grid["c"] == ["x", "y"]
    assert all(isinstance(v, int) for v in grid["b"])


def test_sampler_seed_is_per_cell_and_reproducible() -> None:
    assert T.cell_seed("abc", 0) == T.cell_seed("abc", 0)
    assert T.cell_seed("abc", 0) != T.cell_seed("abd", 0)
    assert T.cell_seed("abc", 0) != T.cell_seed("abc", 1)


def test_objective_value_diverged_and_missing_are_worst() -> None:
    tuning = plan().spec.tuning
    assert T.objective_value("completed", {"val_loss": 0.3}, None, tuning) == 0.3
    assert T.objective_value("diverged", {"val_loss": 0.1}, None, tuning) == math.inf
    assert T.objective_value("completed", {}, None, tuning) == math.inf
    tt = plan(objective={"metric": "time_to_target", "mode": "min"}).spec.tuning
    assert T.objective_value("completed", {"val_loss": 0.1}, None, tt) == math.inf
    assert T.objective_value("completed", {}, 2.5, tt) == 2.5
    assert T.pruning_metric(tt) == "val_loss"


def test_budget_counts_everything_but_infrastructure_losses() -> None:
    study = optuna.create_study()
    for i, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                               TrialState.FAIL, TrialState.COMPLETE]):
        t = study.ask()
        t.suggest_float("x", 0, 1)
        if i == 3:  # lost by the infrastructure: replaced, not counted
            t.set_user_attr(T.COUNTED, False)
        if state == TrialState.COMPLETE:
            study.tell(t, float(i) if i else math.inf)
        else:
            study.tell(t, state=state)
    study.ask()  # a running trial does not count yet
    assert T.budget_used(study) == 4
    params, value = T.best_params(study, "min")  # type: ignore[misc]
    assert value == 4.0  # the diverged (inf) trial is never best
    assert "x" in params


def test_stats_summary_ci_ranks_and_profile() -> None:
    s = summarize([1.0, 2.0, 3.0, math.inf])
    assert s.n == 3 and s.mean == 2.0 and s.std == pytest.approx(1.0)
    assert s.ci_high - s.mean == pytest.approx(t_critical(2) / math.sqrt(3))
    assert t_critical(2) == pytest.approx(4.303)
    assert ranks({"a": 0.2, "b": 0.1, "c": 0.2, "d": math.nan}) == {"b": 1, "a": 2, "c": 2,
                                                                     "d": 4}
    assert ranks({"a": 0.9, "b": 0.95}, mode="max") == {"b": 1, "a": 2}
    prof = performance_profile({"w1": {"a": 1.0, "b": 2.0}, "w2": {"a": 3.0, "b": 1.0}},
                               [1.0, 2.0, 3.0])
    assert prof["a"] == [0.5, 0.5, 1.0] and prof["b"] == [0.5, 1.0, 1.0]


def test_study_names_fit_the_storage_and_short_ones_are_kept() -> None:
    from bench_service.store.models import Cell

    cell = plan().cells[0]
    assert T.study_name("t", cell) == f"t/{cell.label}"  # stored sweeps resume by it
    columns: Any = Cell.__table__.c
    assert columns.study_name.type.length >= T.MAX_STUDY_NAME
    assert T.MAX_STUDY_NAME <= 512  # Optuna's studies.study_name
    assert columns.label.type.length >= T.MAX_CELL_LABEL
    head = "w" * 600
    a, b = T.shorten(head + "a", T.MAX_STUDY_NAME), T.shorten(head + "b", T.MAX_STUDY_NAME)
    assert len(a) == len(b) == T.MAX_STUDY_NAME and a != b and a.startswith("w" * 400)
    exact = "x" * T.MAX_STUDY_NAME
    assert T.shorten(exact, T.MAX_STUDY_NAME) == exact


@pytest.mark.parametrize("space", [
    {"x": FloatDistribution(1e-3, 1.0, log=True)}, {},  # nothing to tune: a grid of one point
])
def test_grid_sampler_asks_and_tells_past_the_end_of_its_grid(space: dict) -> None:
    # Optuna's GridSampler calls study.stop() when its grid is used up, which raises
    # RuntimeError outside study.optimize: the budget, not the grid, ends a cell.
    sampler = T.BudgetGridSampler(T._grid(space, 3), seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(6):
        trial = study.ask(space)
        if space:
            assert 1e-3 <= trial.params["x"] <= 1.0  # grid ends clamped into the range
        study.tell(trial, 1.0)
    assert T.budget_used(study) == 6


def test_a_pruned_trials_value_is_its_last_intermediate_value() -> None:
    study = optuna.create_study()
    trial = study.ask()
    assert T.pruned_value(study.trials[0]) is None
    trial.report(0.5, 0)
    trial.report(0.25, 3)
    assert T.pruned_value(study.trials[0]) == 0.25
    told = study.tell(trial, state=TrialState.PRUNED)
    assert told.value == 0.25  # what Optuna itself holds


def test_counted_trials_leave_out_the_lost_and_replaced() -> None:
    study = optuna.create_study()
    for lost in (False, True, False):
        t = study.ask()
        if lost:
            t.set_user_attr(T.COUNTED, False)
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, 1.0)
    assert [t.number for t in T.counted_trials(study)] == [0, 2]
