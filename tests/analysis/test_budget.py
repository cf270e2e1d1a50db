"""Tuning-budget curves: the ordering bootstrap converges to the exact expectation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _synthetic import tuned_trials

from bench_service.analysis import budget, prepare


def test_exact_expected_best_is_the_mean_over_all_subsets() -> None:
    v = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    for k in range(1, 6):
        brute = np.mean([min(c) for c in itertools.combinations(v, k)])
        assert budget.expected_best_exact(v, k) == pytest.approx(brute)


def test_budget_curves_converge_to_the_exact_values() -> None:
    trials = tuned_trials(n_tuning=6)
    tuning = budget.tuning_values(trials, "final:val_loss", "min")
    curves = budget.budget_curves(tuning, "min", orderings=4000)
    for (w, cell), g in curves.groupby(["workload", "cell"]):
        values = tuning[(tuning["workload"] == w) & (tuning["cell"] == cell)]["value"]
        exact = [budget.expected_best_exact(values.to_numpy(), k) for k in g["k"]]
        np.testing.assert_allclose(g["expected_best"], exact, rtol=0.02)
        assert g["expected_best"].is_monotonic_decreasing
        assert g["expected_best"].iloc[-1] == pytest.approx(values.min())
        assert (g["ci_low"] <= g["expected_best"] + 1e-12).all()


def test_higher_is_better_curves_increase() -> None:
    trials = tuned_trials(n_tuning=5)
    trials["final"] = [{"val_accuracy": 1 - d["val_loss"]} for d in trials["final"]]
    tuning = budget.tuning_values(trials, "final:val_accuracy", "max")
    curves = budget.budget_curves(tuning, "max")
    for _, g in curves.groupby(["workload", "cell"]):
        assert g["expected_best"].is_monotonic_increasing
        assert (g["ci_low"] <= g["ci_high"]).all()


def test_one_shot_against_tuned_and_lr_sensitivity() -> None:
    trials = tuned_trials(n_tuning=6)
    tuning = budget.tuning_values(trials, "final:val_loss", "min")
    curves = budget.budget_curves(tuning, "min")
    finals = prepare(trials).frame
    table = budget.one_shot_vs_tuned(curves, finals, "min")
    assert (table["tuned_from"] == "final runs").all() and (table["gain"] > 0).all()
    lr = budget.lr_sensitivity(tuning)
    assert len(lr) == 4 * 6 and lr["lr"].gt(0).all()


def test_a_diverged_tuning_trial_counts_as_the_worst() -> None:
    trials = tuned_trials(n_tuning=4)
    i = trials.index[trials["role"] == "tuning"][0]
    trials.at[i, "status"] = "diverged"
    trials.at[i, "final"] = {}
    tuning = budget.tuning_values(trials, "final:val_loss", "min")
    w = trials.at[i, "workload"]
    worst = tuning[tuning["workload"] == w]["value"].max()
    assert tuning.loc[tuning["status"] == "diverged", "value"].iloc[0] == worst
