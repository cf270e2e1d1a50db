"""The EMA smoothing slider's function against TensorBoard's formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench_service.dashboard.smoothing import ema, smooth_columns


def reference(values: list[float], beta: float) -> list[float]:
    """S_t = β S_{t−1} + (1 − β) Y_t, S_0 = 0, shown as S_t / (1 − β^t): written out."""
    s, out = 0.0, []
    for t, y in enumerate(values, start=1):
        s = beta * s + (1 - beta) * y
        out.append(s / (1 - beta**t))
    return out


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_ema_matches_the_formula(beta: float) -> None:
    rng = np.random.default_rng(1)
    y = list(2.0 * np.exp(-np.arange(50) / 10) + rng.normal(0, 0.1, 50))
    np.testing.assert_allclose(ema(y, beta), reference(y, beta), rtol=1e-12)


def test_worked_numbers() -> None:
    # β = 0.5, Y = 1, 3: S1 = 0.5 → 0.5/0.5 = 1; S2 = 0.25 + 1.5 = 1.75 → 1.75/0.75.
    np.testing.assert_allclose(ema([1.0, 3.0], 0.5), [1.0, 1.75 / 0.75])


def test_bias_correction_starts_at_the_data() -> None:
    """Without the correction the first point would be (1 − β)·Y₁, near 0 for β = 0.9."""
    assert ema([5.0, 5.0, 5.0], 0.9).tolist() == pytest.approx([5.0, 5.0, 5.0])


def test_non_finite_points_are_skipped_not_propagated() -> None:
    y = [1.0, math.inf, 3.0, math.nan, 5.0]
    out = ema(y, 0.5)
    assert math.isnan(out[1]) and math.isnan(out[3])
    np.testing.assert_allclose(out[[0, 2, 4]], reference([1.0, 3.0, 5.0], 0.5))


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5])
def test_beta_out_of_range(beta: float) -> None:
    with pytest.raises(ValueError, match="smoothing weight"):
        ema([1.0], beta)


def test_smooth_columns_never_mixes_lines() -> None:
    frame = pd.DataFrame({
        "line": ["a"] * 3 + ["b"] * 3,
        "x": [3, 1, 2, 1, 2, 3],  # unsorted on purpose
        "y": [30.0, 10.0, 20.0, 1.0, 2.0, 3.0],
    })
    out = smooth_columns(frame, ["y"], ["line"], 0.5)
    a = out[out["line"] == "a"].sort_values("x")["y"].tolist()
    b = out[out["line"] == "b"].sort_values("x")["y"].tolist()
    assert a == pytest.approx(reference([10.0, 20.0, 30.0], 0.5))
    assert b == pytest.approx(reference([1.0, 2.0, 3.0], 0.5))
    assert smooth_columns(frame, ["y"], ["line"], 0.0)["y"].tolist() == [10.0, 20.0, 30.0,
                                                                        1.0, 2.0, 3.0]
