"""Small statistics for comparing cells across seeds: mean ± std, 95% CI, ranks, profiles.

The leaderboards (``bench results --best``, the dashboard) use a **bootstrap percentile**
interval of the mean: it is made of means of resampled seeds, so it can never leave the
range of the values themselves (a loss CI never goes below zero, a time to target never
below 0 s), which a Student-t interval on two seeds does. The resampling uses a fixed seed,
so the same values always give the same interval. With very few seeds any interval is rough
(with two seeds the bootstrap one is their range); hence every summary carries ``n``, the
number of values it rests on, and the tables show it. The Student-t interval stays
available (``method="t"``; its critical values are tabulated: no SciPy).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

CiMethod = Literal["bootstrap", "t"]
#: Up to this many values the bootstrap distribution is enumerated exactly (1,716 resamples
#: for 7 values); beyond, this many resamples are drawn with a fixed seed.
EXACT_BOOTSTRAP_MAX = 7
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 20240601

# two-sided 95% Student-t critical values t_{0.975, df}, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # ≈ asymptotic expansion


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and 95% confidence interval of ``n`` finite values."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def ci_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


@functools.lru_cache(maxsize=16)
def _all_resamples(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct bootstrap resample of ``n`` values (as index multisets) and its
    probability ``n! / (∏ counts!) / nⁿ``: the exact bootstrap distribution, no sampling."""
    idx = np.array(list(itertools.combinations_with_replacement(range(n), n)), dtype=np.intp)
    counts = np.stack([(idx == i).sum(axis=1) for i in range(n)], axis=1)
    log_w = (math.lgamma(n + 1) - np.vectorize(math.lgamma)(counts + 1).sum(axis=1)
             - n * math.log(n))
    return idx, np.exp(log_w)


def bootstrap_ci(xs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``xs``; reproducible.

    Up to ``EXACT_BOOTSTRAP_MAX`` values the bootstrap distribution is enumerated exactly
    (every distinct resample with its probability); beyond, ``BOOTSTRAP_RESAMPLES``
    resamples are drawn with a fixed seed. Each resample's mean lies between ``min(xs)`` and
    ``max(xs)``, so the interval does too.
    """
    arr = np.asarray(xs, dtype="float64")
    n = arr.size
    if n < 2:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2
    if n <= EXACT_BOOTSTRAP_MAX:
        idx, weights = _all_resamples(n)
        means = arr[idx].mean(axis=1)
        order = np.argsort(means, kind="stable")
        means, cum = means[order], np.cumsum(weights[order])
        cum /= cum[-1]
        lo = means[min(int(np.searchsorted(cum, alpha, side="left")), len(means) - 1)]
        hi = means[min(int(np.searchsorted(cum, 1.0 - alpha, side="left")), len(means) - 1)]
    else:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        means = arr[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    # Guard the promise against float rounding in the mean of identical values.
    return max(float(lo), float(arr.min())), min(float(hi), float(arr.max()))


def summarize(values: Sequence[float], *, method: CiMethod = "t") -> Summary:
    """Summary of the finite values (a diverged seed counts as missing, not as a number).

    Args:
        values: One value per seed; non-finite and ``None`` values are left out of ``n``.
        method: ``"bootstrap"`` (percentile bootstrap: stays inside the values' range, what
            the leaderboards use) or ``"t"`` (Student-t: symmetric, may leave the range).
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    if method == "bootstrap":
        lo, hi = bootstrap_ci(xs)
        return Summary(n, mean, std, lo, hi)
    if method != "t":
        raise ValueError(f"unknown CI method {method!r}; valid: bootstrap, t")
    half = t_critical(n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def ranks(scores: Mapping[str, float], mode: str = "min") -> dict[str, int]:
    """Competition ranks (1 = best; ties share a rank; NaN ranks last)."""
    def key(item: tuple[str, float]) -> float:
        v = item[1]
        if v is None or not math.isfinite(v):
            return math.inf
        return v if mode == "min" else -v

    ordered = sorted(scores.items(), key=key)
    out: dict[str, int] = {}
    prev, prev_rank = None, 0
    for i, (name, _) in enumerate(ordered, start=1):
        k = key((name, scores[name]))
        rank = prev_rank if k == prev else i
        out[name] = rank
        prev, prev_rank = k, rank
    return out


def performance_profile(
    scores: Mapping[str, Mapping[str, float]], taus: Sequence[float], mode: str = "min"
) -> dict[str, list[float]]:
    """Fraction of workloads on which each cell is within a factor τ of the best.

    ``scores[workload][cell]`` is a cell's score on a workload. For ``min`` a cell is within
    τ when score ≤ τ · best (scores > 0); for ``max`` when score ≥ best / τ. AlgoPerf scores
    submissions by the area under this curve.
    """
    cells = sorted({c for per in scores.values() for c in per})
    out = {c: [0.0] * len(taus) for c in cells}
    n = len(scores)
    if n == 0:
        return out
    for per in scores.values():
        finite = [v for v in per.values() if v is not None and math.isfinite(v)]
        if not finite:
            continue
        best = min(finite) if mode == "min" else max(finite)
        for c in cells:
            v = per.get(c)
            if v is None or not math.isfinite(v):
                continue
            ratio = (v / best if best > 0 else (1.0 if v == best else math.inf)) if mode == "min" \
                else (best / v if v > 0 else math.inf)
            for i, tau in enumerate(taus):
                if ratio <= tau + 1e-12:
                    out[c][i] += 1.0 / n
    return out
