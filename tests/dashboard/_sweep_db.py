"""Real sweeps for the dashboard tests: trials trained by the engine, stored like the driver.

Mirrors ``bench_service.cluster`` without Ray: the planner expands a spec, the sweep and its
trials are registered in one transaction (``register_sweep``'s ``NewTrial`` rows), and each
trial is started, streamed (``append_metrics`` per batch, as ``MetricWriter`` does) and
finished with its summary. The engine really trains, so curves, LR schedules, divergence and
summaries are the real thing, just small.

Also runnable, to fill a database for looking at the dashboard by hand::

    python tests/dashboard/_sweep_db.py /tmp/dash.db            # the test sweeps
    python tests/dashboard/_sweep_db.py /tmp/qs.db --quickstart # examples/quickstart.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench_service.engine import run_trial
from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store
from bench_service.sweep import load_spec, parse_spec, plan_sweep
from bench_service.sweep.plan import PlannedTrial

REPO = Path(__file__).resolve().parents[2]

#: The grid the tests look at: 2 workloads × 3 optimizers × 2 schedulers × 2 seeds.
GRID_SPEC: dict[str, Any] = {
    "name": "grid",
    "description": "dashboard test grid",
    "workloads": ["linreg", "mlp_digits"],
    "optimizers": ["sgd", "adam", "momentum"],
    "schedulers": ["constant", "cosine"],
    "regularizers": ["none"],
    "seeds": [0, 1],
    "budget": {"epochs": 3},
}
#: One deliberately diverging cell added to the grid sweep (plain SGD at lr 50 on linreg).
DIVERGING_SPEC: dict[str, Any] = {
    "name": "grid",
    "workloads": ["linreg"],
    "optimizers": [{"name": "sgd", "params": {"lr": 50.0}}],
    "schedulers": ["constant"],
    "seeds": [0],
    "budget": {"epochs": 3},
}


def _new_trial(t: PlannedTrial, role: str = "grid", number: int | None = None) -> NewTrial:
    return NewTrial(
        trial_hash=t.trial_hash, cell_key=t.cell_key, workload=t.workload,
        optimizer=t.optimizer, scheduler=t.scheduler, regularizer=t.regularizer,
        seed=t.seed, config=t.config.to_dict(), params=t.params, role=role, number=number,
    )


def run_and_store(store: Store, trial_id: int, config: dict[str, Any]) -> str:
    """Train one trial with the engine, streaming its metrics into the store; its status."""
    store.start_trial(trial_id, host="test-host", device="cpu", versions={"python": "3"})

    def on_metrics(points: list[MetricPoint]) -> None:
        store.append_metrics(trial_id, points)

    result = run_trial(config, on_metrics=on_metrics)
    store.finish_trial(trial_id, result)
    return result.status


def store_plan(
    store: Store, name: str, planned: Sequence[tuple[PlannedTrial, str, int | None]],
    spec: dict[str, Any], *, finish: bool = True,
) -> int:
    """Register trials ``(planned, role, number)`` as sweep ``name`` and run them all."""
    new = [_new_trial(t, role, number) for t, role, number in planned]
    sweep = store.create_sweep(name, spec, hashlib.sha256(name.encode()).hexdigest(), new,
                               description=spec.get("description"))
    store.set_sweep_status(sweep.id, "running")
    configs = {t.trial_hash: t.config.to_dict() for t, _, _ in planned}
    for trial in store.trials_to_run(sweep.id, statuses=("pending",)):
        run_and_store(store, trial.id, configs[trial.trial_hash])
    if finish:
        store.set_sweep_status(sweep.id, "completed")
    return sweep.id


def build_grid(store: Store) -> int:
    """The ``grid`` sweep: 24 real trials plus one diverging SGD run (25 in all)."""
    plan = plan_sweep(parse_spec(GRID_SPEC))
    diverging = plan_sweep(parse_spec(DIVERGING_SPEC)).trials
    planned = [(t, "grid", None) for t in [*plan.trials, *diverging]]
    return store_plan(store, "grid", planned, plan.spec_dict)


def build_tuned(store: Store, trials_per_cell: int = 5) -> int:
    """The ``tuned`` sweep, as the tuner (issue #4) will store it: per cell
    ``trials_per_cell`` tuning trials on seed 0 at sampled learning rates (role ``tuning``,
    ``number`` = trial number), then the best one re-run on seeds 1 and 2 (role ``final``)."""
    spec = {
        "name": "tuned", "workloads": ["linreg"], "optimizers": ["sgd", "adam"],
        "schedulers": ["constant"], "seeds": [0], "budget": {"epochs": 2},
    }
    plan = plan_sweep(parse_spec(spec))
    rng = random.Random(0)
    planned: list[tuple[PlannedTrial, str, int | None]] = []
    for cell_trial in plan.trials:
        low, high = (1e-3, 0.5) if cell_trial.optimizer == "sgd" else (1e-4, 0.3)
        for number in range(trials_per_cell):
            lr = 10 ** rng.uniform(*(_log10(low), _log10(high)))
            planned.append((_with_lr(cell_trial, lr, seed=0), "tuning", number))
    spec_dict = {**plan.spec_dict, "tuning": {
        "trials_per_cell": trials_per_cell, "sampler": "random", "pruner": "none",
        "objective": {"metric": "val_loss", "mode": "min"}, "tune_seed": 0,
        "final_seeds": [1, 2]}}
    sweep_id = store_plan(store, "tuned", planned, spec_dict, finish=False)
    # Final runs: each cell's best tuning config on the final seeds.
    frame = store.trials_frame("tuned", role="tuning")
    finals: list[NewTrial] = []
    for _cell, g in frame.groupby("cell_key"):
        best = g.sort_values("final_val_loss", na_position="last").iloc[0]
        template = next(t for t, role, _ in planned if t.trial_hash == best["trial_hash"])
        for seed in (1, 2):  # seed 0 would repeat the tuning trial itself (same hash)
            t = replace(template, config=replace(template.config, seed=seed))
            t = replace(t, trial_hash=t.config.config_hash(), seed=seed)
            finals.append(_new_trial(t, "final"))
    added = store.add_trials(sweep_id, finals)
    for info, new in zip(added, finals, strict=True):
        run_and_store(store, info.id, new.config)
    store.set_sweep_status(sweep_id, "completed")
    return sweep_id


def build_running(store: Store) -> int:
    """A sweep caught mid-run: one trial finished, one running with partial curves, the
    rest pending (the Sweeps page must show progress and refresh)."""
    spec = {"name": "live", "workloads": ["linreg"], "optimizers": ["sgd", "adam"],
            "schedulers": ["constant"], "seeds": [0, 1], "budget": {"epochs": 2}}
    plan = plan_sweep(parse_spec(spec))
    new = [_new_trial(t) for t in plan.trials]
    sweep = store.create_sweep("live", plan.spec_dict, "f" * 64, new)
    store.set_sweep_status(sweep.id, "running")
    todo = store.trials_to_run(sweep.id, statuses=("pending",))
    run_and_store(store, todo[0].id, plan.trials[0].config.to_dict())
    store.start_trial(todo[1].id, host="test-host", device="cpu")
    store.append_metrics(todo[1].id, [
        MetricPoint("train_loss", 1.0 / (i + 1), 10 * (i + 1), 0, 0.01 * i, "step")
        for i in range(3)
    ])
    return sweep.id


#: One registered workload in two configurations: two problems, ranked apart.
LABELS_SPEC: dict[str, Any] = {
    "name": "labels",
    "workloads": ["quadratic", {"name": "quadratic", "params": {"condition": 10}}],
    "optimizers": ["sgd", "adam"],
    "schedulers": ["constant"],
    "seeds": [0, 1],
    "budget": {"epochs": 2},
}


def workload_label(t: PlannedTrial) -> str:
    """``quadratic`` / ``quadratic(condition=10)``: the label the planner stores in a trial's
    ``workload`` column (the workload part of the planned cell label; set here too, so the
    tests do not depend on which planner revision runs)."""
    return t.label.split("/", 1)[0]


def build_labels(store: Store) -> int:
    """The ``labels`` sweep: ``quadratic`` and ``quadratic(condition=10)`` × sgd, adam × 2
    seeds (8 real trials), each trial's ``workload`` column holding its label."""
    plan = plan_sweep(parse_spec(LABELS_SPEC))
    planned = [(replace(t, workload=workload_label(t)), "grid", None) for t in plan.trials]
    return store_plan(store, "labels", planned, plan.spec_dict)


def _log10(x: float) -> float:
    import math

    return math.log10(x)


def _with_lr(t: PlannedTrial, lr: float, *, seed: int) -> PlannedTrial:
    optimizer = replace(t.config.optimizer, params={**t.config.optimizer.params, "lr": lr})
    config = replace(t.config, optimizer=optimizer, seed=seed)
    params = {**t.params, "optimizer": {**t.params["optimizer"], "lr": lr}}
    return replace(t, config=config, trial_hash=config.config_hash(), params=params)


def build_quickstart(store: Store, spec_path: Path = REPO / "examples" / "quickstart.yaml") -> int:
    """``examples/quickstart.yaml`` run for real (without Ray): the README's screenshots."""
    plan = plan_sweep(load_spec(spec_path))
    return store_plan(store, plan.name, [(t, "grid", None) for t in plan.trials],
                      plan.spec_dict)


def build_all(url: str, which: Iterable[str] = ("grid", "tuned", "live")) -> str:
    store = Store(url)
    try:
        builders = {"grid": build_grid, "tuned": build_tuned, "live": build_running,
                    "labels": build_labels, "quickstart": build_quickstart}
        for name in which:
            builders[name](store)
    finally:
        store.close()
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="SQLite file or database URL to fill")
    parser.add_argument("--quickstart", action="store_true",
                        help="store examples/quickstart.yaml instead of the test sweeps")
    args = parser.parse_args(argv)
    build_all(args.db, ("quickstart",) if args.quickstart else ("grid", "tuned", "live"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
