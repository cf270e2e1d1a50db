"""Bias-corrected exponential moving average, the smoothing TensorBoard applies to curves.

S₀ = 0, S_t = β·S_{t−1} + (1−β)·Y_t and the plotted value is S_t / (1 − β^t). Without the
division the first points would be pulled towards 0 (the start value of S); the correction
makes the smoothed curve start at the data (S₁ / (1 − β) = Y₁) for every β.

Non-finite inputs (a diverged run's ``inf``, a missing bucket's NaN) are skipped: they give
NaN at their position and neither update S nor advance t, as TensorBoard does, so one bad
point does not poison the rest of the curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def ema(values: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """The bias-corrected EMA of ``values`` with smoothing weight ``beta`` in [0, 1).

    ``beta = 0`` returns the values unchanged (non-finite ones as NaN).

    Raises:
        ValueError: ``beta`` outside [0, 1).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {beta!r}")
    y = np.asarray(values, dtype="float64")
    out = np.full(y.shape, np.nan)
    s, t = 0.0, 0
    for i, v in enumerate(y):
        if not np.isfinite(v):
            continue
        t += 1
        s = beta * s + (1.0 - beta) * v
        out[i] = s / (1.0 - beta**t)
    return out


def smooth_columns(
    frame: pd.DataFrame, columns: Sequence[str], by: Sequence[str], beta: float, order: str = "x"
) -> pd.DataFrame:
    """A copy of ``frame`` whose ``columns`` are smoothed line by line.

    Each line (the rows sharing the ``by`` values) is sorted by ``order`` and smoothed on
    its own: smoothing must never mix two runs or two groups.
    """
    out = frame.sort_values([*by, order], kind="stable").copy()
    if beta <= 0 or out.empty:
        return out
    keys = list(by)
    for column in columns:
        if keys:
            out[column] = out.groupby(keys, sort=False, dropna=False)[column].transform(
                lambda s: pd.Series(ema(s.to_numpy(), beta), index=s.index)
            )
        else:
            out[column] = ema(out[column].to_numpy(), beta)
    return out
