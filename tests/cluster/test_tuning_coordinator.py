"""The tuning coordinator on its own (no Ray): how interrupted trials are settled."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from bench_service.cluster.tuning import TuningCoordinator
from bench_service.engine import run_trial
from bench_service.store import Store
from bench_service.sweep import SweepPlan, parse_spec, plan_sweep
from bench_service.sweep import tuning as T

SPEC = {
    "name": "coord", "workloads": ["quadratic"], "optimizers": ["sgd"],
    "schedulers": ["constant"], "budget": {"epochs": 2},
    "tuning": {"trials_per_cell": 3, "sampler": "random", "final_seeds": [0]},
}


class Setup(NamedTuple):
    url: str
    plan: SweepPlan
    store: Store
    sweep_id: int
    coord: TuningCoordinator
    key: str


def _setup(tmp_path: Path) -> Setup:
    """A new tuned sweep in a SQLite file and its coordinator (a plain object, no Ray)."""
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    plan = plan_sweep(parse_spec(SPEC))
    store = Store(url)
    sweep = store.create_sweep(plan.name, plan.spec_dict, plan.spec_hash, [])
    coord = TuningCoordinator(url, plan, sweep.id)
    return Setup(url, plan, store, sweep.id, coord, plan.cells[0].cell_key)


def test_cancel_counts_a_trial_stored_but_not_yet_told(tmp_path: Path) -> None:
    """Ctrl-C between storing an outcome and telling it: the trial counts, once."""
    url, plan, store, sweep_id, coord, key = _setup(tmp_path)
    stored_id, _, config = coord.ask(key)
    running_id, _, _ = coord.ask(key)
    store.finish_trial(stored_id, run_trial(config))  # the driver stored it, then Ctrl-C

    assert coord.abandon_running() == 1  # the trial still running

    assert T.budget_used(coord.studies[key]) == 1
    status = store.trials_frame("coord", role="tuning").set_index("trial_id")["status"]
    assert status[stored_id] == "completed" and status[running_id] == "cancelled"
    # a resume sees one trial of budget spent, and asks for the two left
    assert TuningCoordinator(url, plan, sweep_id).recover() == {key: 1}
    store.close()


def test_recover_settles_what_a_killed_driver_left_running(tmp_path: Path) -> None:
    url, plan, store, sweep_id, coord, key = _setup(tmp_path)
    stored_id, _, config = coord.ask(key)
    lost_id, _, _ = coord.ask(key)
    store.finish_trial(stored_id, run_trial(config))
    del coord  # the driver died: both Optuna trials stay RUNNING

    fresh = TuningCoordinator(url, plan, sweep_id)
    assert fresh.recover() == {key: 1}
    assert T.budget_used(fresh.studies[key]) == 1
    status = store.trials_frame("coord", role="tuning").set_index("trial_id")["status"]
    assert status[stored_id] == "completed" and status[lost_id] == "cancelled"
    store.close()
