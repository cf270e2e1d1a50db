"""The dashboard's leaderboard ranks at equal wall-clock too and shows step cost vs SGD."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cost_sweep import cost_sweep

from bench_service.dashboard import analysis
from bench_service.store import dashboard_queries as q


def test_dashboard_leaderboard_equal_time_and_overhead(tmp_path: Path) -> None:
    store = cost_sweep(tmp_path)
    sweep = store.get_sweep("cost")
    assert sweep is not None
    ranked, _ = analysis.ranked_trials(q.trial_summaries(store, sweep.id))
    curves = q.run_curves(store, sweep.id, name="val_loss", scope="epoch", x="wall_time",
                          max_points=2000, axes=False).rename(columns={"x": "wall_time"})
    board = analysis.leaderboard(ranked, "final:val_loss", "min", curves=curves)
    board = board.set_index("optimizer")
    assert board.loc["muon", "rank"] == 1 and board.loc["muon", "rank_time"] == 2
    assert board.loc["sgd", "rank_time"] == 1
    assert board.loc["sgd", "mean_at_time"] == pytest.approx(0.505)
    assert board.loc["muon", "vs_sgd"] == pytest.approx(3.0)
    assert board.loc["muon", "state_bytes"] == 4096
    without = analysis.leaderboard(ranked, "final:val_loss", "min").set_index("optimizer")
    assert without["rank_time"].isna().all() and without.loc["muon", "vs_sgd"] == 3.0
    store.close()
