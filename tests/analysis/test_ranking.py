"""Friedman and Nemenyi against scipy and scikit-posthocs run directly; the critical
difference against Demšar's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import grid_trials

from bench_service.analysis import prepare, ranking


def _frame() -> pd.DataFrame:
    return prepare(grid_trials(opt_effect={"sgd": 0.3, "momentum": 0.1},
                               regularizers=("none",), noise=0.15, rng_seed=2)).frame


def test_friedman_statistic_is_scipys() -> None:
    from scipy import stats

    frame = _frame()
    result = ranking.friedman(frame, "min")
    wide, _ = ranking.block_matrix(frame, "min")
    ref = stats.friedmanchisquare(*wide.to_numpy().T)
    assert result.statistic == pytest.approx(ref.statistic)
    assert result.p == pytest.approx(ref.pvalue)
    assert result.k == 6 and result.blocks == 6


def test_nemenyi_p_values_are_scikit_posthocs() -> None:
    sp = pytest.importorskip("scikit_posthocs")
    frame = _frame()
    result = ranking.friedman(frame, "min")
    wide, _ = ranking.block_matrix(frame, "min")
    ref = sp.posthoc_nemenyi_friedman(wide.reset_index(drop=True))
    for row in result.pairwise.itertuples():
        assert row.p == pytest.approx(ref.loc[row.x, row.y], abs=1e-6)


def test_critical_difference_matches_demsars_table() -> None:
    # Demšar (2006), Table 5: q_0.05 = 2.728 for k = 5 2.949 for k = 7, 3.031 for k = 8
    assert ranking.critical_difference(5, 10) == pytest.approx(
        2.728 * np.sqrt(5 * 6 / (6 * 10)), rel=1e-3)
    assert ranking.critical_difference(7, 30) == pytest.approx(
        2.949 * np.sqrt(7 * 8 / (6 * 30)), rel=1e-3)
    assert ranking.critical_difference(8, 12) == pytest.approx(
        3.031 * np.sqrt(8 * 9 / (6 * 12)), rel=1e-3)


def test_cliques_join_cells_within_the_critical_difference() -> None:
    ranks = pd.DataFrame({"cell": list("abcd"), "mean_rank": [1.0, 1.5, 2.8, 3.0]})
    assert ranking.cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    assert ranking.cliques(ranks, 0.1) == []


def test_higher_is_better_ranks_the_largest_first() -> None:
    frame = _frame().assign(value=lambda f: -f["value"])
    result = ranking.friedman(frame, "max")
    assert result.ranks.iloc[0]["cell"].startswith("adam/")
