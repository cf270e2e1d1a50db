"""Helpers for the store tests, importable by spawned worker processes (unlike conftest)."""

from __future__ import annotations

import traceback
from typing import Any

from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store


def new_trial(
    i: int,
    *,
    workload: str = "quadratic",
    optimizer: str = "sgd",
    scheduler: str = "constant",
    regularizer: str = "none",
    seed: int = 0,
    role: str = "grid",
    trial_hash: str | None = None,
) -> NewTrial:
    """A small, valid trial whose hash is derived from ``i`` unless given."""
    config = {
        "workload": {"name": workload, "params": {}},
        "optimizer": {"name": optimizer, "params": {"lr": 0.1 * (i + 1)}},
        "scheduler": {"name": scheduler, "params": {}},
        "regularizer": {"name": regularizer, "params": {}},
        "seed": seed,
    }
    return NewTrial(
        trial_hash=trial_hash or f"h{i:063d}",
        cell_key=f"c{workload}-{optimizer}-{scheduler}-{regularizer}",
        workload=workload,
        optimizer=optimizer,
        scheduler=scheduler,
        regularizer=regularizer,
        seed=seed,
        config=config,
        params={"lr": 0.1 * (i + 1)},
        role=role,
    )


def append_worker(url: str, trial_id: int, batches: int, per_batch: int, barrier: Any) -> None:
    """Spawned process: append ``batches`` batches of ``per_batch`` points to one trial."""
    store = Store(url, upgrade=False)
    try:
        barrier.wait(timeout=60)
        for b in range(batches):
            points = [
                MetricPoint("train_loss", float(i), b * per_batch + i, b, 0.001 * i)
                for i in range(per_batch)
            ]
            store.append_metrics(trial_id, points)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        store.close()


def upgrade_worker(url: str, barrier: Any) -> None:
    """Spawned process: run the migrations at the same moment as its siblings."""
    from bench_service.store import upgrade

    try:
        barrier.wait(timeout=60)
        upgrade(url)
    except BaseException:
        traceback.print_exc()
        raise


def run_processes(target: Any, args_list: list[tuple[Any, ...]], timeout: float = 120) -> None:
    """Run ``target`` once per args tuple in spawned processes started behind one barrier."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(args_list))
    procs = [ctx.Process(target=target, args=(*args, barrier)) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), f"worker exit codes {codes}"
