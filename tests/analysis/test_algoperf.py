"""AlgoPerf's score against a hand computation; infinite where the target is never reached;
where time and steps disagree."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench_service.analysis import algoperf


def _frame(times: dict[str, dict[str, list[float]]], steps: dict[str, dict[str, list[float]]]
           ) -> pd.DataFrame:
    rows = []
    for w, per in times.items():
        for cell, ts in per.items():
            for seed, t in enumerate(ts):
                rows.append({"workload": w, "cell": cell, "seed": seed, "time_to_target": t,
                             "step_to_target": steps[w][cell][seed]})
    return pd.DataFrame(rows)


NAN = math.nan
TIMES = {  # median over seeds; NaN = never reached
    "w1": {"a": [10, 10, 12], "b": [20, 20, 20], "c": [NAN, NAN, 5]},
    "w2": {"a": [30, 30, 30], "b": [15, 15, 15], "c": [100, 100, 100]},
}
STEPS = {
    "w1": {"a": [100, 100, 100], "b": [50, 50, 50], "c": [NAN, NAN, 10]},
    "w2": {"a": [300, 300, 300], "b": [300, 300, 300], "c": [400, 400, 400]},
}


def test_scores_match_a_hand_computation() -> None:
    scores, prof, notes = algoperf.algoperf(_frame(TIMES, STEPS))
    s = scores.set_index("cell")
    # time: w1 best a (10): a r=1, b r=2, c inf (2 of 3 seeds never reached);
    #       w2 best b (15): a r=2, b r=1, c r=6.67 > 4 → inf.
    # B = mean_w max(0, 4 − r)/3
    assert s.loc["a", "score_time"] == pytest.approx(((4 - 1) / 3 + (4 - 2) / 3) / 2)
    assert s.loc["b", "score_time"] == pytest.approx(((4 - 2) / 3 + (4 - 1) / 3) / 2)
    assert s.loc["c", "score_time"] == 0.0
    # steps: w1 best b (50): a r=2, b 1; w2 best a=b (300): both 1, c 4/3.
    assert s.loc["a", "score_steps"] == pytest.approx(((4 - 2) / 3 + 1) / 2)
    assert s.loc["b", "score_steps"] == pytest.approx(1.0)
    assert s.loc["c", "score_steps"] == pytest.approx((0 + (4 - 4 / 3) / 3) / 2)
    # a and b tie on time; steps puts b first: the table says who moves.
    assert s.loc["b", "rank_steps"] == 1 and s.loc["a", "rank_steps"] == 2
    assert any("differently" in n for n in notes)
    # the profile is the step function whose integral is the score
    rho = prof[(prof["measure"] == "time") & (prof["cell"] == "a")]
    area = np.trapezoid(rho["rho"], rho["tau"]) / 3
    assert area == pytest.approx(s.loc["a", "score_time"], abs=0.02)


def test_a_workload_nobody_reaches_adds_nothing_and_is_named() -> None:
    times = {"w1": {"a": [NAN], "b": [NAN]}, "w2": {"a": [1.0], "b": [2.0]}}
    scores, _, notes = algoperf.algoperf(_frame(times, times))
    s = scores.set_index("cell")
    assert s.loc["a", "score_time"] == pytest.approx(0.5)
    assert s.loc["b", "score_time"] == pytest.approx((4 - 2) / 3 / 2)
    assert any("no cell reached the target on w1" in n for n in notes)
