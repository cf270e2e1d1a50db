"""The driver side of trial tasks: storing outcomes as they arrive, and the embedded session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from bench_service.cluster import tasks
from bench_service.cluster.session import _kill_autoscaler_monitor, ray_session
from bench_service.cluster.sweep_runner import collect, start_writer, writer_name
from bench_service.cluster.tasks import TrialOutcome, writer_handle
from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    with ray_session(num_cpus=1):
        yield


@pytest.fixture()
def trial_ids(tmp_path: Path) -> tuple[Store, list[int]]:
    store = Store(f"sqlite:///{tmp_path / 'bench.db'}")
    trials = [
        NewTrial(trial_hash=f"h{i:063d}", cell_key="c", workload="quadratic", optimizer="sgd",
                 scheduler="constant", regularizer="none", seed=i,
                 config={"workload": "quadratic", "optimizer": "sgd", "seed": i}, params={},
                 role="grid")
        for i in range(3)
    ]
    sweep = store.create_sweep("s", {"name": "s"}, "a" * 64, trials)
    return store, [t.id for t in store.trials_to_run(sweep.id)]


@ray.remote(max_retries=0)
def _returns(outcome: TrialOutcome) -> TrialOutcome:
    return outcome


@ray.remote(max_retries=0)
def _raises() -> Any:
    raise RuntimeError("worker blew up")


def _points(n: int) -> list[MetricPoint]:
    return [MetricPoint("train_loss", 1.0 / (s + 1), s, 0, 0.01 * s) for s in range(n)]


def test_collect_stores_start_points_and_outcome_of_a_short_trial(
    local_ray: None, trial_ids: tuple[Store, list[int]]
) -> None:
    store, ids = trial_ids
    start = {"host": "node-a", "device": "cpu", "versions": {"torch": "x"}}
    outcome = TrialOutcome(ids[0], {"status": "completed", "steps": 5}, _points(5), start)

    assert collect(_returns.remote(outcome), ids[0], store) == ("completed", False)

    row = store.trial(ids[0])
    assert (row.status, row.host, row.attempt, row.steps) == ("completed", "node-a", 1, 5)
    assert len(store.curves_frame(trial_ids=[ids[0]])) == 5
    assert [r.id for r in store.trials_to_run(row.sweep_id)] == ids[1:]


def test_an_outcome_the_store_refuses_is_a_failed_trial_with_the_reason(
    local_ray: None, trial_ids: tuple[Store, list[int]]
) -> None:
    store, ids = trial_ids
    outcome = TrialOutcome(ids[1], {"status": "completed", "bogus_key": 1}, [], None)

    assert collect(_returns.remote(outcome), ids[1], store) == ("failed", False)

    row = store.trial(ids[1])
    assert row.status == "failed"
    assert row.error is not None and "could not store the outcome" in row.error
    assert "bogus_key" in row.error


def test_a_task_ray_gave_up_on_is_failed_and_reported_lost(
    local_ray: None, trial_ids: tuple[Store, list[int]]
) -> None:
    store, ids = trial_ids

    assert collect(_raises.remote(), ids[2], store) == ("failed", True)

    row = store.trial(ids[2])
    assert row.status == "failed"
    assert row.error is not None and "lost by Ray after retries" in row.error
    assert "worker blew up" in row.error


def test_the_embedded_sessions_autoscaler_monitor_can_be_killed_ahead_of_shutdown(
    local_ray: None,
) -> None:
    # ray.shutdown() waits a full second for this process (its SIGTERM handler reports to
    # the GCS that shutdown already stopped); the session kills it first. This guards the
    # private Ray handle it goes through against Ray upgrades.
    from ray._private import ray_constants, worker

    node: Any = worker._global_node
    monitors = node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, [])
    assert monitors, "the embedded Ray has no autoscaler monitor any more"
    assert all(m.process.poll() is None for m in monitors)

    _kill_autoscaler_monitor()

    assert all(m.process.poll() is not None for m in monitors)


def test_a_trial_keeps_its_points_until_the_writer_exists_then_streams_them(
    local_ray: None, trial_ids: tuple[Store, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ids = trial_ids
    monkeypatch.setattr(tasks, "FLUSH_SECONDS", 0.0)  # every batch is due at once
    name = writer_name()
    stream = tasks._Streamer(name, ids[0], {"host": "node-b", "device": "cpu", "versions": {}})

    assert writer_handle(name) is None
    stream(_points(3))  # due, but no writer yet: nothing lost, nothing sent
    assert len(stream.buffer) == 3 and stream.unsent_start is not None

    writer = start_writer(store.url, name=name)  # lives as long as this handle
    stream(_points(2))  # the next batch goes, with the start and the kept points
    outcome = stream.outcome({"status": "completed"})  # waits until they are stored

    assert outcome.points == [] and outcome.start is None
    row = store.trial(ids[0])
    assert (row.status, row.host) == ("running", "node-b")
    assert len(store.curves_frame(trial_ids=[ids[0]])) == 5
    del writer


def test_a_stopped_writer_drops_later_writes_so_cancelled_marks_are_final(
    trial_ids: tuple[Store, list[int]]
) -> None:
    # Ctrl-C: the driver stops the writer, then marks unfinished trials cancelled; a trial
    # still running must not set its row back to running or store an outcome after that.
    store, ids = trial_ids
    writer = tasks.MetricWriter(store.url)
    writer.append(ids[0], _points(3))
    writer.stop()
    store.mark_unfinished(store.trial(ids[0]).sweep_id, "cancelled")

    writer.start(ids[1], {"host": "node-a", "device": "cpu", "versions": {}})
    writer.append(ids[0], _points(5))
    writer.finish(ids[2], {"status": "completed", "steps": 5}, _points(5))

    assert [store.trial(i).status for i in ids] == ["cancelled"] * 3
    curves = store.curves_frame("s")
    assert len(curves) == 3  # the points stored before the stop stay
