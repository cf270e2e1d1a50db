"""Small statistics for comparing cells across seeds: mean ± std, 95% CI, ranks, profiles.

Kept dependency-free (no SciPy): Student-t critical values for small samples are tabulated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    """Mean, sample standard deviation and 95% confidence interval of a few seeds."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def ci_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite values (a diverged seed counts as missing, not as a number)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
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
