"""Preparing the values: diverged = worst (counted), unfinished cells left out (named)."""

from __future__ import annotations

import pandas as pd
from _synthetic import grid_trials, tuned_trials

from bench_service.analysis import prepare
from bench_service.analysis.data import axis_levels


def test_diverged_trials_get_the_workloads_worst_value_and_are_counted() -> None:
    trials = grid_trials(workloads=("w1",))
    for i in (0, 1):
        trials.at[i, "status"] = "diverged"
        trials.at[i, "final"] = {"val_loss": float("nan")}
    prep = prepare(trials)
    frame = prep.frame
    worst = frame.loc[~frame["imputed"], "value"].max()
    assert (frame.loc[frame["imputed"], "value"] == worst).all()
    assert prep.imputed == {"w1": 2}
    assert any("2 diverged/failed trial(s)" in n for n in prep.notes)


def test_a_cell_without_a_finished_trial_is_left_out_and_named() -> None:
    trials = grid_trials(workloads=("w1",))
    cell = (trials["optimizer"] == "sgd") & (trials["scheduler"] == "cosine") & (
        trials["regularizer"] == "l2")
    trials.loc[cell, "status"] = "pending"
    trials.loc[cell, "final"] = pd.Series([{}] * int(cell.sum()), index=trials.index[cell])
    prep = prepare(trials)
    assert prep.dropped_cells == ["w1: sgd/cosine/l2"]
    assert "sgd/cosine/l2" not in set(prep.frame["cell"])
    assert any("no finished trial" in n for n in prep.notes)


def test_a_tuned_sweep_compares_its_final_runs_by_its_own_objective() -> None:
    trials = tuned_trials()
    spec = {"tuning": {"objective": {"metric": "val_loss", "mode": "min"}}}
    prep = prepare(trials, spec=spec)
    assert prep.objective == "final:val_loss" and prep.mode == "min"
    assert "final runs" in prep.which and len(prep.frame) == 8


def test_one_name_at_two_settings_is_two_levels_of_its_axis() -> None:
    trials = grid_trials(workloads=("w1",), optimizers=("sgd",), schedulers=("constant",),
                         regularizers=("none",), seeds=(0,))
    other = trials.copy()
    other["params"] = [{"optimizer": {"lr": 50.0}}]
    levels = axis_levels(pd.concat([trials, other], ignore_index=True))
    assert list(levels["optimizer"]) == ["sgd#1", "sgd#2"]
