"""The leaderboard at equal steps and at equal wall-clock, and step cost relative to SGD.

Real SQLite store; the trials are written the way the driver writes them (``finish_trial``
with the runner's summary keys), with curves whose wall times make the slow optimizer win at
equal steps and lose at equal time.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _cost_sweep import cost_sweep

from bench_service.store import Store
from bench_service.sweep.best import best_table


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return cost_sweep(tmp_path)


def test_ranks_at_equal_steps_and_at_equal_wall_clock(store: Store) -> None:
    table = best_table(store, "cost").set_index("optimizer")
    # Equal steps: muon's 0.2 beats sgd's 0.5.
    assert table.loc["muon", "rank"] == 1 and table.loc["sgd", "rank"] == 2
    # Equal time: the budget is the faster cell's 4 s, when muon had run 2 epochs (0.6).
    assert table.loc["sgd", "time_budget_s"] == pytest.approx(4.0)
    assert table.loc["muon", "mean_at_time"] == pytest.approx(0.605)
    assert table.loc["sgd", "mean_at_time"] == pytest.approx(0.505)
    assert table.loc["sgd", "rank_time"] == 1 and table.loc["muon", "rank_time"] == 2
    store.close()


def test_step_time_overhead_relative_to_sgd_and_state(store: Store) -> None:
    table = best_table(store, "cost").set_index("optimizer")
    assert table.loc["sgd", "vs_sgd"] == pytest.approx(1.0)
    assert table.loc["muon", "vs_sgd"] == pytest.approx(3.0)
    assert table.loc["muon", "step_time_ms"] == pytest.approx(3 * 1.05)
    assert table.loc["muon", "state_bytes"] == 4096 and table.loc["sgd", "state_bytes"] == 0
    assert table.loc["muon", "peak_memory_bytes"] == 14_096
    frame = store.trials_frame("cost")
    assert {"step_time_mean", "step_time_p90", "optimizer_state_bytes",
            "peak_memory_bytes"} <= set(frame.columns)
    assert math.isclose(frame["step_time_p90"].iloc[0], 0.002)
    store.close()
