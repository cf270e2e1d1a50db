"""Robust aggregates against rliable's own definitions on fixed data, and the stratified
bootstrap against a plain loop with the same resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import grid_trials

from bench_service.analysis import prepare, robust

#: Fixed scores: 5 runs × 4 tasks for two algorithms (ties included).
X = np.array([[0.9, 0.2, 0.5, 1.0], [0.7, 0.4, 0.5, 0.8], [0.95, 0.1, 0.6, 0.9],
              [0.3, 0.3, 0.5, 1.2], [0.8, 0.25, 0.55, 0.7]])
Y = np.array([[0.5, 0.2, 0.4, 0.9], [0.6, 0.5, 0.5, 0.6], [0.4, 0.1, 0.3, 1.0],
              [0.55, 0.3, 0.45, 0.8], [0.5, 0.35, 0.5, 0.75]])


def test_point_estimates_match_rliable() -> None:
    metrics = pytest.importorskip("rliable.metrics")
    assert robust.iqm(X) == pytest.approx(metrics.aggregate_iqm(X))
    assert robust.median(X) == pytest.approx(metrics.aggregate_median(X))
    assert robust.mean(X) == pytest.approx(metrics.aggregate_mean(X))
    assert robust.optimality_gap(X) == pytest.approx(metrics.aggregate_optimality_gap(X))
    assert robust.probability_of_improvement(X, Y) == pytest.approx(
        metrics.probability_of_improvement(X, Y))
    assert robust.probability_of_improvement(Y, X) == pytest.approx(
        metrics.probability_of_improvement(Y, X))
    assert robust.probability_of_improvement(X, X) == pytest.approx(0.5)


def test_iqm_matches_scipy_trim_mean_for_every_size() -> None:
    from scipy.stats import trim_mean

    rng = np.random.default_rng(0)
    for runs in range(1, 9):
        s = rng.random((runs, 3))
        assert robust.iqm(s) == pytest.approx(trim_mean(s, 0.25, axis=None))


def test_stratified_bootstrap_resamples_runs_within_each_task() -> None:
    cube = np.stack([X, Y])
    idx = robust.stratified_indices(5, 4, resamples=300, seed=1)
    boot = robust.resample(cube, idx)
    assert boot.shape == (2, 300, 5, 4)
    loop = np.empty(300)
    for b in range(300):
        sample = np.stack([X[idx[b, :, t], t] for t in range(4)], axis=1)
        loop[b] = robust.iqm(sample)
        for t in range(4):  # every value of task t comes from task t
            assert set(boot[0, b, :, t]) <= set(X[:, t])
    np.testing.assert_allclose(robust.iqm(boot)[0], loop)


def _scores_frame() -> pd.DataFrame:
    rows = []
    for name, mat in (("x", X), ("y", Y)):
        for run in range(5):
            for task in range(4):
                rows.append({"workload": f"t{task}", "cell": name, "optimizer": name,
                             "scheduler": "c", "regularizer": "none", "seed": run,
                             "value": -mat[run, task], "status": "completed",
                             "imputed": False})
    return pd.DataFrame(rows)


def test_aggregates_table_has_intervals_around_the_estimates() -> None:
    frame = prepare(grid_trials(opt_effect={"sgd": 0.5})).frame
    table, notes = robust.aggregates(frame, "min", resamples=500)
    assert not notes
    assert set(table["metric"]) == {"IQM", "median", "mean", "optimality_gap"}
    assert (table["ci_low"] <= table["estimate"] + 1e-12).all()
    assert (table["estimate"] <= table["ci_high"] + 1e-12).all()
    iqm = table[table["metric"] == "IQM"].set_index("cell")["estimate"]
    assert iqm.filter(like="sgd/").max() < iqm.filter(like="adam/").min()


def test_normalised_scores_are_one_at_the_best_and_zero_at_the_worst() -> None:
    frame = _scores_frame()
    s = robust.normalized(frame, "max")  # values are -scores: max is best
    for _w, g in frame.assign(s=s).groupby("workload"):
        assert g.loc[g["value"].idxmax(), "s"] == pytest.approx(1.0)
        assert g.loc[g["value"].idxmin(), "s"] == pytest.approx(0.0)


def test_one_seed_gives_no_interval_and_says_so() -> None:
    frame = prepare(grid_trials(seeds=(0,))).frame
    table, notes = robust.aggregates(frame, "min")
    assert table["ci_low"].isna().all() and table["estimate"].notna().all()
    assert any("one seed" in n for n in notes)


def test_improvement_matrix_is_complementary() -> None:
    frame = prepare(grid_trials(opt_effect={"sgd": 0.5})).frame
    m = robust.improvement_matrix(frame, "min", ["adam/cosine/none", "sgd/cosine/none"],
                                  resamples=200)
    p = m.set_index(["x", "y"])["probability"]
    assert p[("adam/cosine/none", "sgd/cosine/none")] == pytest.approx(1.0)
    assert p[("adam/cosine/none", "sgd/cosine/none")] + p[
        ("sgd/cosine/none", "adam/cosine/none")] == pytest.approx(1.0)
    assert (m["ci_low"] <= m["probability"] + 1e-12).all()
