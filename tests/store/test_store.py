"""Contract suite of ``Store``: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timezone

import pytest
from _store_helpers import append_worker, new_trial, run_processes
from sqlalchemy import func, select, text

from bench_service.engine.records import MetricPoint, TrialResult
from bench_service.store import (
    CURVES_FRAME_COLUMNS,
    TRIAL_STATUSES,
    TRIALS_FRAME_COLUMNS,
    Store,
    StoreError,
    SweepExistsError,
)
from bench_service.store.models import Metric, Sweep, Trial

SPEC = {"axes": {"optimizer": ["sgd", "adam"]}, "budget": {"epochs": 2}}


def _count(store: Store, model: type) -> int:
    with store.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def _grid(store: Store, name: str = "grid") -> list[int]:
    """A sweep of 6 trials: 2 optimizers x 3 seeds (sgd first); returns the trial ids."""
    trials = [
        new_trial(i, optimizer=opt, seed=seed)
        for i, (opt, seed) in enumerate((o, s) for o in ("sgd", "adam") for s in range(3))
    ]
    sweep = store.create_sweep(name, SPEC, "f" * 64, trials)
    return [t.id for t in store.trials_to_run(sweep.id)]


def _points(name: str, values: list[float], scope: str = "step") -> list[MetricPoint]:
    return [
        MetricPoint(name, v, step=10 * i, epoch=i, wall_time=0.5 * i, scope=scope)  # type: ignore[arg-type]
        for i, v in enumerate(values)
    ]


# ---------------------------------------------------------------------- sweeps


def test_create_sweep_writes_sweep_and_pending_trials(store: Store) -> None:
    trials = [new_trial(i, seed=i) for i in range(3)]
    sweep = store.create_sweep("s1", SPEC, "a" * 64, trials, description="demo")

    assert sweep.name == "s1" and sweep.spec == SPEC and sweep.spec_hash == "a" * 64
    assert sweep.status == "pending" and sweep.n_trials == 3 and sweep.description == "demo"
    assert sweep.counts["pending"] == 3 and sum(sweep.counts.values()) == 3
    assert set(sweep.counts) == set(TRIAL_STATUSES)
    rows = store.trials_to_run(sweep.id)
    assert [r.trial_hash for r in rows] == [t.trial_hash for t in trials]
    first = rows[0]
    assert first.status == "pending" and first.attempt == 0 and first.role == "grid"
    assert first.config == trials[0].config and first.params == trials[0].params
    assert first.final is None and first.started_at is None
    assert store.get_sweep("s1") == sweep


def test_create_sweep_is_atomic(store: Store) -> None:
    trials = [new_trial(0), new_trial(1), new_trial(2, trial_hash=new_trial(0).trial_hash)]
    with pytest.raises(StoreError, match="nothing was written"):
        store.create_sweep("broken", SPEC, "a" * 64, trials)
    assert store.get_sweep("broken") is None
    assert _count(store, Sweep) == 0 and _count(store, Trial) == 0
    # A bad role is rejected by the check constraint, equally atomically.
    with pytest.raises(StoreError):
        store.create_sweep("broken", SPEC, "a" * 64, [new_trial(0), new_trial(1, role="nope")])
    assert _count(store, Sweep) == 0 and _count(store, Trial) == 0
    # The name is still free afterwards.
    assert store.create_sweep("broken", SPEC, "a" * 64, [new_trial(0)]).n_trials == 1


def test_create_sweep_rejects_a_taken_name(store: Store) -> None:
    store.create_sweep("s", SPEC, "a" * 64, [new_trial(0)])
    with pytest.raises(SweepExistsError, match="'s' already exists"):
        store.create_sweep("s", SPEC, "b" * 64, [new_trial(1)])
    assert _count(store, Trial) == 1


def test_add_trials_is_idempotent(store: Store) -> None:
    sweep = store.create_sweep("tune", SPEC, "a" * 64, [new_trial(0, role="tuning")])
    batch = [new_trial(0, role="tuning"), new_trial(1, role="tuning"), new_trial(2, role="tuning")]

    added = store.add_trials(sweep.id, batch)
    assert [t.trial_hash for t in added] == [t.trial_hash for t in batch]
    assert len({t.id for t in added}) == 3
    store.start_trial(added[1].id, "host", "cpu", {})

    again = store.add_trials(sweep.id, [*batch, batch[1]])
    assert [t.id for t in again] == [*(t.id for t in added), added[1].id]
    assert again[1].status == "running"  # existing rows come back untouched, not reset
    assert _count(store, Trial) == 3
    info = store.get_sweep("tune")
    assert info is not None and info.n_trials == 3
    with pytest.raises(StoreError, match="unknown sweep id"):
        store.add_trials(sweep.id + 100, batch)


def test_list_and_delete_sweeps(store: Store) -> None:
    a_ids = _grid(store, "a")
    _grid(store, "b")
    store.start_trial(a_ids[0], "h", "cpu", {})
    store.append_metrics(a_ids[0], _points("train_loss", [1.0, 0.5]))

    sweeps = store.list_sweeps()
    assert [s.name for s in sweeps] == ["a", "b"]
    assert sweeps[0].counts["running"] == 1 and sweeps[0].counts["pending"] == 5
    assert sweeps[1].counts["pending"] == 6

    assert store.delete_sweep("a") is True
    assert store.delete_sweep("a") is False
    assert [s.name for s in store.list_sweeps()] == ["b"]
    assert _count(store, Trial) == 6 and _count(store, Metric) == 0


def test_set_sweep_status_sets_timestamps(store: Store) -> None:
    sweep = store.create_sweep("s", SPEC, "a" * 64, [new_trial(0)])
    store.set_sweep_status(sweep.id, "running")
    running = store.get_sweep("s")
    assert running is not None and running.status == "running"
    assert running.started_at is not None and running.finished_at is None

    store.set_sweep_status(sweep.id, "cancelled")
    cancelled = store.get_sweep("s")
    assert cancelled is not None and cancelled.finished_at is not None

    store.set_sweep_status(sweep.id, "running")  # resumed: keeps started_at, not finished
    resumed = store.get_sweep("s")
    assert resumed is not None and resumed.started_at == running.started_at
    assert resumed.finished_at is None
    with pytest.raises(StoreError, match="invalid sweep status 'diverged'"):
        store.set_sweep_status(sweep.id, "diverged")
    with pytest.raises(StoreError, match="unknown sweep id"):
        store.set_sweep_status(sweep.id + 1, "running")


def test_timestamps_are_aware_utc(store: Store) -> None:
    ids = _grid(store)
    store.start_trial(ids[0], "h", "cpu", {})
    trial = store.trial(ids[0])
    for value in (trial.created_at, trial.started_at, trial.heartbeat_at):
        assert value is not None and value.utcoffset() is not None
        assert value.tzinfo is not None and value.utcoffset() == timezone.utc.utcoffset(None)
    assert trial.created_at <= trial.started_at  # type: ignore[operator]


# ---------------------------------------------------------------------- trials


def test_start_trial_twice_deletes_earlier_metrics_and_bumps_attempt(store: Store) -> None:
    tid = _grid(store)[0]
    assert store.start_trial(tid, "node1", "cuda:0", {"torch": "2.4"}) == 1
    store.append_metrics(tid, _points("train_loss", [3.0, 2.0, 1.0]))
    store.finish_trial(tid, {"status": "failed", "error": "OOM", "final": {"val_loss": 1.0}})

    assert store.start_trial(tid, "node2", "cpu", {"torch": "2.5"}) == 2
    trial = store.trial(tid)
    assert trial.status == "running" and trial.attempt == 2
    assert trial.host == "node2" and trial.device == "cpu" and trial.versions == {"torch": "2.5"}
    assert trial.error is None and trial.final is None and trial.final_val_loss is None
    assert trial.finished_at is None
    assert store.curves_frame(trial_ids=[tid]).empty

    store.append_metrics(tid, _points("train_loss", [3.0, 2.0, 1.0]))
    assert len(store.curves_frame(trial_ids=[tid])) == 3
    with pytest.raises(StoreError, match="unknown trial id"):
        store.start_trial(10_000, "h", "cpu", {})

def test_finish_with_start_is_one_attempt_written_in_one_transaction(store: Store) -> None:
    """A short trial sends its start with its outcome: same rows as start + finish."""
    tid = _grid(store)[0]
    store.start_trial(tid, "node1", "cpu", {})  # an earlier attempt, lost mid-run
    store.append_metrics(tid, _points("train_loss", [9.0, 8.0]))
    began = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    store.finish_trial(
        tid, {"status": "completed", "final": {"val_loss": 0.5}},
        _points("train_loss", [3.0, 2.0, 1.0]),
        start={"host": "node2", "device": "cpu", "versions": {"torch": "2.5"},
               "started_at": began},
    )
    trial = store.trial(tid)
    assert trial.status == "completed" and trial.attempt == 2
    assert trial.host == "node2" and trial.versions == {"torch": "2.5"}
    assert trial.started_at == began and trial.finished_at is not None
    assert trial.final_val_loss == 0.5
    assert store.curves_frame(trial_ids=[tid])["value"].tolist() == [3.0, 2.0, 1.0]

    with pytest.raises(StoreError, match="unknown start keys"):
        store.finish_trial(tid, {"status": "completed"}, start={"hostname": "x"})
    with pytest.raises(StoreError, match="unknown trial id"):
        store.finish_trial(10_000, {"status": "completed"}, start={"host": "x"})
    assert store.trial(tid).attempt == 2  # the failed calls wrote nothing



def test_append_metrics_round_trips_non_finite_values(store: Store) -> None:
    tid = _grid(store)[0]
    store.start_trial(tid, "h", "cpu", {})
    values = [1.5, math.nan, math.inf, -math.inf, 0.0, -2.25]
    store.append_metrics(tid, _points("train_loss", values))

    frame = store.curves_frame(trial_ids=[tid])
    got = frame["value"].tolist()
    assert len(got) == len(values)
    for g, v in zip(got, values, strict=True):
        assert (math.isnan(g) and math.isnan(v)) or g == v
    with store.engine.connect() as conn:
        stored = conn.execute(select(Metric.value, Metric.special).order_by(Metric.step)).all()
    assert [tuple(r) for r in stored] == [
        (1.5, None),
        (None, "nan"),
        (None, "inf"),
        (None, "-inf"),
        (0.0, None),
        (-2.25, None),
    ]


def test_append_metrics_updates_heartbeat_and_rejects_unknown_trials(store: Store) -> None:
    tid = _grid(store)[0]
    store.start_trial(tid, "h", "cpu", {})
    before = store.trial(tid).heartbeat_at
    store.append_metrics(tid, _points("train_loss", [1.0]))
    after = store.trial(tid).heartbeat_at
    assert before is not None and after is not None and after >= before
    store.append_metrics(tid, [])  # nothing to store: just a heartbeat
    with pytest.raises(StoreError, match="trial 9999"):
        store.append_metrics(9999, _points("train_loss", [1.0]))
    with pytest.raises(StoreError):
        store.append_metrics(tid, _points("train_loss", [1.0], scope="batch"))
    assert _count(store, Metric) == 1


def test_finish_trial_sets_summary_columns(store: Store) -> None:
    tid = _grid(store)[0]
    store.start_trial(tid, "h", "cuda:0", {})
    store.finish_trial(
        tid,
        {
            "status": "diverged",
            "final": {"val_loss": math.inf, "val_accuracy": 0.25, "train_loss": math.nan},
            "best": {"val_loss": 0.75, "val_accuracy": 0.5},
            "steps": 120,
            "epochs": 3,
            "wall_time": 12.5,
            "examples_per_sec": 1000.0,
            "diverged_step": 118,
            "error": None,
            "step_to_target": 40,
            "time_to_target": 4.25,
            "device": "cuda:0",
        },
    )
    t = store.trial(tid)
    assert t.status == "diverged" and t.finished_at is not None
    assert (t.steps, t.epochs, t.diverged_step, t.step_to_target) == (120, 3, 118, 40)
    assert (t.wall_time, t.examples_per_sec, t.time_to_target) == (12.5, 1000.0, 4.25)
    # Scalar columns hold finite values only; the JSON keeps the faithful values.
    assert t.final_val_loss is None and t.final_train_loss is None
    assert t.final_val_accuracy == 0.25
    assert (t.best_val_loss, t.best_val_accuracy) == (0.75, 0.5)
    assert t.final is not None and t.final["val_loss"] == math.inf
    assert math.isnan(t.final["train_loss"])
    assert t.best == {"val_loss": 0.75, "val_accuracy": 0.5}


def test_finish_trial_accepts_a_trial_result(store: Store) -> None:
    tid = _grid(store)[0]
    store.start_trial(tid, "h", "cpu", {})
    result = TrialResult(
        status="completed",
        metrics=_points("train_loss", [1.0]),
        final={"val_loss": 0.5, "val_accuracy": 0.9, "train_loss": 0.4},
        best={"val_loss": 0.45, "val_accuracy": 0.91},
        steps=10,
        epochs=1,
        wall_time=1.0,
        examples_per_sec=50.0,
        extra={"note": "ignored"},
    )
    store.finish_trial(tid, result)
    t = store.trial(tid)
    assert t.status == "completed" and t.final_train_loss == 0.4 and t.best_val_accuracy == 0.91
    store.finish_trial(tid, result.to_dict())  # the dict form (metrics, extra ignored)
    assert store.trial(tid).final == result.final


def test_finish_trial_stores_the_last_points_in_the_same_transaction(store: Store) -> None:
    tid = _grid(store)[0]
    store.start_trial(tid, "h", "cpu", {})
    store.append_metrics(tid, _points("train_loss", [3.0, 2.0]))
    store.finish_trial(tid, {"status": "completed"}, _points("val_loss", [1.0, math.inf]))
    curves = store.curves_frame("grid")
    assert sorted(curves["name"]) == ["train_loss", "train_loss", "val_loss", "val_loss"]
    assert curves[curves["name"] == "val_loss"]["value"].tolist() == [1.0, math.inf]
    with pytest.raises(StoreError):  # unknown trial: nothing is written, points included
        store.finish_trial(10_000, {"status": "completed"}, _points("val_loss", [1.0]))
    assert len(store.curves_frame("grid")) == 4


def test_finish_trial_rejects_bad_input(store: Store) -> None:
    tid = _grid(store)[0]
    with pytest.raises(StoreError, match="unknown result keys"):
        store.finish_trial(tid, {"status": "completed", "finl": {}})
    with pytest.raises(StoreError, match="invalid finished trial status"):
        store.finish_trial(tid, {"status": "running"})
    with pytest.raises(StoreError, match="unknown trial id"):
        store.finish_trial(9999, {"status": "completed"})
    assert store.trial(tid).status == "pending"


def test_mark_unfinished_and_status_counts(store: Store) -> None:
    ids = _grid(store)
    sweep = store.get_sweep("grid")
    assert sweep is not None
    store.start_trial(ids[0], "h", "cpu", {})
    store.start_trial(ids[1], "h", "cpu", {})
    store.finish_trial(ids[1], {"status": "completed"})
    store.start_trial(ids[2], "h", "cpu", {})
    store.finish_trial(ids[2], {"status": "diverged"})

    counts = store.status_counts(sweep.id)
    assert counts == {
        **dict.fromkeys(TRIAL_STATUSES, 0),
        "pending": 3,
        "running": 1,
        "completed": 1,
        "diverged": 1,
    }
    assert store.mark_unfinished(sweep.id) == 4
    assert store.status_counts(sweep.id)["cancelled"] == 4
    assert store.trial(ids[0]).finished_at is not None
    assert store.mark_unfinished(sweep.id) == 0
    assert store.trial(ids[1]).status == "completed"
    with pytest.raises(StoreError, match="invalid trial status"):
        store.mark_unfinished(sweep.id, "done")


def test_trials_to_run(store: Store) -> None:
    ids = _grid(store)
    sweep = store.get_sweep("grid")
    assert sweep is not None
    for tid, status in zip(ids[:4], ("completed", "failed", "pruned", "cancelled"), strict=True):
        store.start_trial(tid, "h", "cpu", {})
        store.finish_trial(tid, {"status": status})
    store.start_trial(ids[4], "h", "cpu", {})  # left running by a dead driver

    assert [t.id for t in store.trials_to_run(sweep.id)] == [ids[1], ids[3], ids[4], ids[5]]
    assert [t.id for t in store.trials_to_run(sweep.id, ["pending"])] == [ids[5]]
    done = store.trials_to_run(sweep.id, ("completed", "pruned"))
    assert [t.id for t in done] == [ids[0], ids[2]]
    with pytest.raises(StoreError, match="invalid trial status"):
        store.trials_to_run(sweep.id, ["done"])


def test_trial_by_id_and_pickling(store: Store) -> None:
    tid = _grid(store)[0]
    assert store.trial(tid).id == tid
    with pytest.raises(StoreError, match="unknown trial id 12345"):
        store.trial(12345)
    clone = pickle.loads(pickle.dumps(store))
    try:
        assert clone.url == store.url and clone.trial(tid) == store.trial(tid)
    finally:
        clone.close()


# ---------------------------------------------------------------------- frames


def test_trials_frame_columns_and_filters(store: Store) -> None:
    ids = _grid(store)
    other = store.create_sweep(
        "other", SPEC, "b" * 64, [new_trial(100, optimizer="lion", workload="digits")]
    )
    store.start_trial(ids[0], "h", "cpu", {})
    store.finish_trial(ids[0], {"status": "completed", "final": {"val_loss": 0.5}, "steps": 7})

    frame = store.trials_frame("grid")
    assert tuple(frame.columns) == TRIALS_FRAME_COLUMNS
    assert frame["trial_id"].tolist() == ids
    assert set(frame["sweep"]) == {"grid"}
    row = frame.iloc[0]
    assert row["final_val_loss"] == 0.5 and row["steps"] == 7 and row["attempt"] == 1
    assert row["params"] == {"lr": 0.1}
    assert str(frame["started_at"].dt.tz) == "UTC"

    assert frame["optimizer"].tolist() == ["sgd"] * 3 + ["adam"] * 3
    assert len(store.trials_frame("grid", optimizer="adam")) == 3
    assert len(store.trials_frame("grid", optimizer=["adam", "sgd"], seed=[0, 2])) == 4
    assert len(store.trials_frame("grid", optimizer="adam", seed=1)) == 1
    assert store.trials_frame("grid", status="completed")["trial_id"].tolist() == ids[:1]
    assert len(store.trials_frame("grid", status=["pending", "running"])) == 5
    assert len(store.trials_frame("grid", role="tuning")) == 0
    assert len(store.trials_frame("grid", optimizer=[])) == 0

    everything = store.trials_frame()
    assert len(everything) == 7 and set(everything["sweep"]) == {"grid", "other"}
    assert store.trials_frame(workload="digits")["trial_id"].tolist() == [
        t.id for t in store.trials_to_run(other.id)
    ]
    # Filter values are bound parameters: quotes are just characters.
    assert store.trials_frame(optimizer="sgd' OR '1'='1").empty


def test_empty_frames_have_their_columns(store: Store) -> None:
    store.create_sweep("empty", SPEC, "a" * 64, [])
    assert tuple(store.trials_frame("empty").columns) == TRIALS_FRAME_COLUMNS
    assert tuple(store.curves_frame("empty").columns) == CURVES_FRAME_COLUMNS


def test_curves_frame_order_columns_and_filters(store: Store) -> None:
    ids = _grid(store)
    for tid in (ids[3], ids[0]):  # written out of id order on purpose
        store.start_trial(tid, "h", "cpu", {})
        store.append_metrics(tid, _points("val_loss", [0.9, 0.8], scope="epoch"))
        store.append_metrics(tid, list(reversed(_points("train_loss", [3.0, 2.0, 1.0]))))

    frame = store.curves_frame("grid")
    assert tuple(frame.columns) == CURVES_FRAME_COLUMNS
    assert len(frame) == 10
    keys = list(zip(frame["trial_id"], frame["name"], frame["scope"], frame["step"], strict=True))
    assert keys == sorted(keys)
    first = frame[frame["trial_id"] == ids[0]]
    assert first["name"].tolist() == ["train_loss"] * 3 + ["val_loss"] * 2
    assert first["value"].tolist() == [3.0, 2.0, 1.0, 0.9, 0.8]
    assert first["step"].tolist() == [0, 10, 20, 0, 10]
    assert set(first["optimizer"]) == {"sgd"} and set(frame["status"]) == {"running"}

    assert len(store.curves_frame("grid", names="val_loss")) == 4
    assert len(store.curves_frame("grid", names=["val_loss", "train_loss"], scope="step")) == 6
    assert set(store.curves_frame("grid", optimizer="adam")["trial_id"]) == {ids[3]}
    assert set(store.curves_frame(trial_ids=[ids[3]])["trial_id"]) == {ids[3]}
    assert store.curves_frame(trial_ids=[]).empty
    assert len(store.curves_frame("grid", seed=0, scope="epoch")) == 4


def test_unknown_sweep_is_a_clear_error(store: Store) -> None:
    _grid(store, "adam-vs-sgd")
    with pytest.raises(StoreError, match=r"unknown sweep 'adam-vs-sdg'; known: 'adam-vs-sgd'"):
        store.trials_frame("adam-vs-sdg")
    with pytest.raises(StoreError, match="unknown sweep 'nope'"):
        store.curves_frame("nope")
    assert store.get_sweep("nope") is None


def test_misspelt_filter_values_are_errors(store: Store) -> None:
    _grid(store)
    with pytest.raises(StoreError, match="invalid status 'complete' in filter"):
        store.trials_frame("grid", status="complete")
    with pytest.raises(StoreError, match="invalid role 'tune' in filter"):
        store.trials_frame(role=["grid", "tune"])
    with pytest.raises(StoreError, match="invalid scope 'batch' in filter"):
        store.curves_frame(scope="batch")


# ---------------------------------------------------------------------- concurrency


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    """4 processes append 50 batches of 200 points each to their own trials, all at once."""
    workers, batches, per_batch = 4, 50, 200
    ids = _grid(store)[:workers]
    for tid in ids:
        store.start_trial(tid, "h", "cpu", {})
    run_processes(append_worker, [(store.url, tid, batches, per_batch) for tid in ids])

    assert _count(store, Metric) == workers * batches * per_batch
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT trial_id, COUNT(DISTINCT step) FROM bench_metrics GROUP BY trial_id")
        ).all()
    per_trial = {int(trial_id): int(n) for trial_id, n in rows}
    assert per_trial == dict.fromkeys(ids, batches * per_batch)


def test_the_spec_description_is_stored_and_listed(store: Store) -> None:
    spec = {"name": "d", "description": "Adam vs SGD on a noisy quadratic"}
    created = store.create_sweep("d", spec, "d" * 64, [new_trial(0)])
    assert created.description == spec["description"]
    listed = {s.name: s for s in store.list_sweeps()}
    assert listed["d"].description == spec["description"]
    store.create_sweep("none", {"name": "none"}, "e" * 64, [new_trial(1)])
    assert store.get_sweep("none").description is None  # type: ignore[union-attr]
    with store.engine.connect() as conn:
        stored = conn.scalar(select(Sweep.description).where(Sweep.name == "d"))
    assert stored == spec["description"]


def test_values_of_lists_what_a_filter_can_match(store: Store) -> None:
    _grid(store)
    assert store.values_of("grid", "optimizer") == ["adam", "sgd"]
    assert store.values_of("grid", "status") == ["pending"]
    with pytest.raises(StoreError, match="unknown sweep"):
        store.values_of("nope", "optimizer")
    with pytest.raises(StoreError, match="cannot list values of 'config'"):
        store.values_of("grid", "config")
