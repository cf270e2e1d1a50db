"""Confidence intervals that respect the values' range, and say how many values they rest on."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bench_service.sweep.stats import EXACT_BOOTSTRAP_MAX, bootstrap_ci, summarize


def test_two_seeds_of_a_loss_never_give_a_negative_lower_end() -> None:
    t = summarize([0.01, 0.5], method="t")
    assert t.ci_low < 0  # the defect: Student-t on two seeds of a loss
    b = summarize([0.01, 0.5], method="bootstrap")
    assert b.n == 2 and b.ci_low == pytest.approx(0.01) and b.ci_high == pytest.approx(0.5)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 12, 30])
def test_bootstrap_interval_stays_within_the_data(n: int) -> None:
    rng = np.random.default_rng(n)
    xs = rng.lognormal(size=n).tolist()
    s = summarize([*xs, math.inf, math.nan], method="bootstrap")  # non-finite: left out
    assert s.n == n
    assert min(xs) <= s.ci_low <= s.mean <= s.ci_high <= max(xs)
    assert summarize(xs, method="bootstrap") == summarize(xs, method="bootstrap")  # fixed


def test_exact_bootstrap_matches_brute_force_enumeration() -> None:
    xs = [0.3, 1.0, 2.5, 7.0]
    means = sorted(sum(c) / len(xs) for c in itertools.product(xs, repeat=len(xs)))
    k = len(means)
    # The 2.5 % and 97.5 % points of the n^n equally likely resamples.
    expected = means[math.ceil(0.025 * k) - 1], means[math.ceil(0.975 * k) - 1]
    assert bootstrap_ci(xs) == pytest.approx(expected)
    assert len(xs) <= EXACT_BOOTSTRAP_MAX


def test_one_value_has_no_interval() -> None:
    s = summarize([3.0], method="bootstrap")
    assert s.n == 1 and s.mean == 3.0 and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="bootstrap, t"):
        summarize([1.0, 2.0], method="z")  # type: ignore[arg-type]
