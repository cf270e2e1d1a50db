"""Paired-by-seed differences: scipy's paired t-test, Holm, and honesty with one seed."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import grid_trials

from bench_service.analysis import paired, prepare


def test_paired_stats_match_scipy_ttest_rel() -> None:
    from scipy import stats

    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 0.3, 6), rng.normal(1.2, 0.3, 6)
    s = paired.paired_stats(a - b)
    ref = stats.ttest_rel(a, b)
    assert s["p"][0] == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval()
    assert s["ci_low"][0] == pytest.approx(ci.low) and s["ci_high"][0] == pytest.approx(ci.high)


def test_versus_best_pairs_by_seed_and_corrects_for_many_comparisons() -> None:
    frame = prepare(grid_trials(workloads=("w1",), opt_effect={"sgd": 0.5}, noise=0.05)).frame
    table, notes = paired.versus_best(frame, "min")
    assert not notes
    assert (table["p_holm"] >= table["p"] - 1e-15).all()
    sgd = table[table["cell"].str.startswith("sgd/")]
    assert sgd["significant"].all() and (sgd["diff"] > 0.3).all()
    assert (table["n"] == 3).all()
    one = paired.compare(frame, "w1", "sgd/constant/none", "adam/constant/none")
    assert one["diff"] == pytest.approx(0.5, abs=0.15) and one["n"] == 3


def test_one_seed_has_no_interval_or_p_value_and_says_so() -> None:
    frame = prepare(grid_trials(workloads=("w1",), seeds=(0,))).frame
    table, notes = paired.versus_best(frame, "min")
    assert table["ci_low"].isna().all() and table["p"].isna().all()
    assert not table["significant"].any()
    assert notes == ["w1: one seed per cell: paired differences have no confidence interval "
                     "or p-value"]


def test_an_unknown_cell_is_named() -> None:
    frame = prepare(grid_trials(workloads=("w1",))).frame
    with pytest.raises(ValueError, match="no cell 'nope'"):
        paired.compare(frame, "w1", "nope", "adam/constant/none")
