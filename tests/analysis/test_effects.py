"""Factorial effects: planted effects are recovered, a null sweep stays within the stated
false-positive rate, and the sums of squares are statsmodels' own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import grid_trials

from bench_service.analysis import effects, prepare

PLANTED = {"opt_effect": {"sgd": 0.6, "momentum": 0.25},
           "sched_effect": {"cosine": -0.3},
           "interaction": {("sgd", "cosine"): 0.12}}


def _values(**kw: object) -> pd.DataFrame:
    return prepare(grid_trials(**kw)).frame  # type: ignore[arg-type]


def test_planted_main_and_interaction_effects_are_recovered() -> None:
    frame = _values(workloads=("w1",), noise=0.05, seeds=(0, 1, 2, 3), **PLANTED)
    table = effects.anova(frame).table.set_index("term")
    assert list(table.drop("residual")["eta_sq"].sort_values(ascending=False).index[:3]) == [
        "optimizer", "scheduler", "optimizer:scheduler"]
    assert set(table.index[table["significant"]]) == {"optimizer", "scheduler",
                                                      "optimizer:scheduler"}
    assert table.loc["regularizer", "p"] > 0.01
    # Effect sizes are ordered and bounded as their definitions say.
    for term in ("optimizer", "scheduler", "optimizer:scheduler"):
        row = table.loc[term]
        assert 0 <= row["omega_sq"] <= row["partial_eta_sq"] <= 1
        assert row["eta_sq"] <= row["partial_eta_sq"]


def test_sums_of_squares_match_statsmodels_type_ii_on_an_unbalanced_grid() -> None:
    smf = pytest.importorskip("statsmodels.formula.api")
    from statsmodels.stats.anova import anova_lm

    frame = _values(workloads=("w1",), noise=0.2, rng_seed=3, **PLANTED)
    frame = frame.drop(index=[0, 5, 17, 30]).reset_index(drop=True)  # unbalanced
    ours = effects.anova(frame).table.set_index("term")
    model = smf.ols("value ~ C(optimizer) + C(scheduler) + C(regularizer) + "
                    "C(optimizer):C(scheduler) + C(optimizer):C(regularizer) + "
                    "C(scheduler):C(regularizer)", data=frame).fit()
    ref = anova_lm(model, typ=2)
    ref.index = [i.replace("C(", "").replace(")", "") for i in ref.index]
    ref = ref.rename(index={"Residual": "residual"})
    for term in ours.index:
        assert ours.loc[term, "sum_sq"] == pytest.approx(ref.loc[term, "sum_sq"], rel=1e-7)
        assert ours.loc[term, "df"] == ref.loc[term, "df"]
        if term != "residual":
            assert ours.loc[term, "F"] == pytest.approx(ref.loc[term, "F"], rel=1e-7)
            assert ours.loc[term, "p"] == pytest.approx(ref.loc[term, "PR(>F)"], rel=1e-6,
                                                         abs=1e-300)


def test_null_sweeps_stay_within_the_stated_false_positive_rate() -> None:
    """2,000 sweeps where nothing matters, fitted in one call: each term's raw p-value is
    uniform (≈ 5 % below 0.05) and Holm keeps 'any term significant' at ≤ 5 %."""
    frame = _values(workloads=("w1",), seeds=(0, 1, 2))
    reps = 2000
    y = np.random.default_rng(11).standard_normal((len(frame), reps))
    table = effects.anova(frame, response=y).table
    terms = table[table["term"] != "residual"]
    raw = np.stack(terms["p"].to_numpy())  # terms × reps
    sig = np.stack(terms["significant"].to_numpy())
    se = np.sqrt(0.05 * 0.95 / reps)
    assert np.all(np.abs((raw < 0.05).mean(axis=1) - 0.05) < 4 * se)
    assert sig.any(axis=0).mean() <= 0.05 + 3 * se


def test_one_seed_without_replicates_keeps_main_effects_and_says_so() -> None:
    frame = _values(workloads=("w1",), regularizers=("none",), seeds=(0,), **PLANTED)
    result = effects.anova(frame)
    assert any("main effects only" in n for n in result.notes)
    assert list(result.table["term"]) == ["optimizer", "scheduler", "residual"]
    assert result.df_resid == 2


def test_cross_workload_uses_the_mixed_model_when_residuals_are_normal() -> None:
    frame = _values(workload_scale={"w1": 1.0, "w2": 10.0, "w3": 0.1},
                    workloads=("w1", "w2", "w3"), noise=0.1, **PLANTED)
    cross = effects.cross_workload(frame, "min")
    assert cross is not None and cross.method == "mixed", cross
    assert "Shapiro" in cross.reason and "mixed" in cross.reason
    table = cross.table.set_index("term")
    assert table.loc["optimizer", "significant"] and table.loc["scheduler", "significant"]
    assert table["eta_sq"].idxmax() == "optimizer"


def test_cross_workload_falls_back_to_ranks_when_normality_fails() -> None:
    frame = _values(workloads=("w1", "w2"), noise=0.0, **PLANTED)
    rng = np.random.default_rng(5)
    frame["value"] += rng.standard_cauchy(len(frame)) * 0.05  # heavy tails
    cross = effects.cross_workload(frame, "min")
    assert cross is not None and cross.method == "rank"
    assert "fail Shapiro" in cross.reason and "rank" in cross.reason
    assert cross.table.set_index("term").loc["optimizer", "significant"]


def test_a_single_workload_has_no_cross_workload_model() -> None:
    assert effects.cross_workload(_values(workloads=("w1",), **PLANTED), "min") is None


def test_the_sentence_a_user_reads() -> None:
    shares = pd.Series({"optimizer": 0.61, "scheduler": 0.22, "optimizer:scheduler": 0.09,
                        "regularizer": 0.004, "residual": 0.076})
    assert effects.sentence(shares, "on these workloads") == (
        "on these workloads the optimizer explains 61 % of the variance, the schedule 22 %, "
        "their interaction 9 % (seeds and noise: 8 %)")
    assert effects.describe_term("scheduler:regularizer") == \
        "the schedule × regularizer interaction"


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.005, np.nan])
    ours = effects.holm(p)
    ref = multitest.multipletests(p[:-1], method="holm")[1]
    np.testing.assert_allclose(ours[:-1], ref)
    assert np.isnan(ours[-1])


def test_interaction_table_feeds_the_interaction_plots() -> None:
    frame = _values(workloads=("w1",), noise=0.0, **PLANTED)
    table = effects.interaction_table(frame, "optimizer", "scheduler")
    row = table[(table["optimizer"] == "sgd") & (table["scheduler"] == "cosine")].iloc[0]
    assert row["mean"] == pytest.approx(1.0 + 0.6 - 0.3 + 0.12)
    assert row["n"] == 6  # 2 regularizers × 3 seeds
