"""The dashboard's query layer on SQLite and PostgreSQL, against values known by construction.

A small sweep is written through the ``Store`` API: 2 optimizers × 3 seeds, a per-step
``loss`` (10 points) whose value is ``base[optimizer] + 0.1·seed + step/1000``, a per-epoch
``val_loss``, and one run (adam, seed 2) that diverges at step 50 (``inf``), so every
aggregate can be checked against numbers computed here by hand.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store
from bench_service.store import dashboard_queries as q
from bench_service.store._frames import AxisFilters

PG_ADMIN_URL = os.environ.get(
    "BENCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BASE = {"sgd": 1.0, "adam": 0.5}
STEPS = list(range(10, 101, 10))


def expected(optimizer: str, seed: int, step: int) -> float:
    return BASE[optimizer] + 0.1 * seed + step / 1000


def fill(store: Store) -> int:
    trials = [
        NewTrial(trial_hash=f"{o}-{s}".ljust(64, "0"), cell_key=o.ljust(64, "0"),
                 workload="linreg", optimizer=o, scheduler="constant", regularizer="none",
                 seed=s, config={"seed": s}, params={"optimizer": {"lr": 0.1 * (s + 1)}})
        for o in BASE for s in range(3)
    ]
    sweep = store.create_sweep("q", {"name": "q"}, "0" * 64, trials)
    store.set_sweep_status(sweep.id, "running")
    for info in store.trials_to_run(sweep.id, statuses=("pending",)):
        store.start_trial(info.id, host="h", device="cpu")
        diverges = info.optimizer == "adam" and info.seed == 2
        points = []
        for step in STEPS:
            if diverges and step > 50:
                break
            value = math.inf if diverges and step == 50 else expected(
                info.optimizer, info.seed, step)
            points.append(MetricPoint("loss", value, step, step // 20, step / 100, "step"))
            if step % 20 == 0 and not (diverges and step >= 50):
                points.append(MetricPoint("val_loss", value, step, step // 20, step / 100,
                                          "epoch"))
        store.append_metrics(info.id, points)
        store.finish_trial(info.id, {
            "status": "diverged" if diverges else "completed",
            "final": {"val_loss": points[-1].value}, "steps": points[-1].step,
            "diverged_step": 50 if diverges else None,
        })
    store.set_sweep_status(sweep.id, "completed")
    return sweep.id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, int]]:
    """(store, sweep id) on each backend; PostgreSQL in a throwaway database."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path_factory.mktemp('q') / 'q.db'}")
        try:
            yield store, fill(store)
        finally:
            store.close()
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_dash_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}")
    store = Store(make_url(PG_ADMIN_URL).set(database=name).render_as_string(
        hide_password=False))
    try:
        yield store, fill(store)
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_sweeps_frame_counts(filled: tuple[Store, int]) -> None:
    store, _ = filled
    frame = q.sweeps_frame(store)
    row = frame[frame["name"] == "q"].iloc[0]
    assert (row["completed"], row["diverged"], row["pending"], row["n_trials"]) == (5, 1, 0, 6)
    assert row["status"] == "completed" and row["started_at"] <= row["finished_at"]
    assert q.schema_ready(store)


def test_catalog(filled: tuple[Store, int]) -> None:
    store, sid = filled
    cat = q.metric_catalog(store, sid).set_index(["name", "scope"])
    assert set(cat.index) == {("loss", "step"), ("val_loss", "epoch")}
    assert cat.loc[("loss", "step"), "points_per_run"] == 10
    assert cat.loc[("loss", "step"), "max_step"] == 100
    assert cat.loc[("loss", "step"), "max_wall_time"] == pytest.approx(1.0)


def test_bands_are_the_mean_min_max_std_across_runs(filled: tuple[Store, int]) -> None:
    store, sid = filled
    bands = q.curve_bands(store, sid, name="loss", scope="step", x="step",
                          group_by=["optimizer"], max_points=200, points_per_run=10)
    assert len(bands) == 2 * len(STEPS)  # one point per stored step: no downsampling needed
    for row in bands.itertuples():
        seeds = [s for s in range(3)
                 if not (row.optimizer == "adam" and s == 2 and row.x >= 50)]
        values = [expected(row.optimizer, s, int(row.x)) for s in seeds]
        assert row.n == len(values)
        assert row.mean == pytest.approx(np.mean(values))
        assert (row.min, row.max) == (pytest.approx(min(values)), pytest.approx(max(values)))
        assert row.std == pytest.approx(np.std(values, ddof=1))


def test_downsampling_happens_in_the_database(filled: tuple[Store, int]) -> None:
    store, sid = filled
    coarse = q.curve_bands(store, sid, name="loss", scope="step", x="step",
                           group_by=["optimizer"], max_points=3)
    assert coarse.groupby("optimizer").size().max() <= 3
    sgd = coarse[coarse["optimizer"] == "sgd"].iloc[0]  # bucket 0: steps 10..30 (width 34)
    values = [expected("sgd", s, st) for s in range(3) for st in (10, 20, 30)]
    assert sgd["mean"] == pytest.approx(np.mean(values)) and sgd["n"] == 9
    wall = q.curve_bands(store, sid, name="loss", scope="step", x="wall_time",
                         group_by=["optimizer", "workload"], max_points=4)
    assert wall.groupby("optimizer").size().max() <= 4
    assert set(wall["workload"]) == {"linreg"}


def test_filters_and_runs(filled: tuple[Store, int]) -> None:
    store, sid = filled
    only = q.curve_bands(store, sid, name="loss", scope="step", x="epoch",
                         group_by=["seed"], filters=AxisFilters(optimizer=["sgd"], seed=[0, 1]))
    assert sorted(set(only["seed"])) == [0, 1]
    runs = q.run_curves(store, sid, name="loss", scope="step", x="step", max_points=200,
                        points_per_run=10)
    assert runs.groupby("trial_id").size().tolist() == [10, 10, 10, 10, 10, 5]
    first = int(runs["trial_id"].min())
    one = q.run_curves(store, sid, name="loss", scope="step", trial_ids=[first])
    assert set(one["trial_id"]) == {first}
    assert q.run_curves(store, sid, name="loss", scope="step", trial_ids=[]).empty


def test_divergence_points(filled: tuple[Store, int]) -> None:
    store, sid = filled
    div = q.divergence_points(store, sid, name="loss", scope="step")
    assert len(div) == 1
    row = div.iloc[0]
    assert (row["optimizer"], row["seed"], row["diverged_step"]) == ("adam", 2, 50)
    assert (row["step"], row["value"]) == (40, pytest.approx(expected("adam", 2, 40)))
    # A metric the run never recorded a finite value of still lists the run.
    none_yet = q.divergence_points(store, sid, name="nope", scope="epoch")
    assert len(none_yet) == 1 and math.isnan(none_yet.iloc[0]["value"])


def test_trial_points_restore_non_finite_values(filled: tuple[Store, int]) -> None:
    store, sid = filled
    div = q.divergence_points(store, sid, name="loss", scope="step")
    points = q.trial_points(store, int(div.iloc[0]["trial_id"]))
    loss = points[points["name"] == "loss"]
    assert loss["value"].iloc[-1] == math.inf and len(loss) == 5


def test_fingerprint_changes_with_progress(filled: tuple[Store, int]) -> None:
    store, sid = filled
    before = q.sweep_fingerprint(store, sid)
    assert before == q.sweep_fingerprint(store, sid)
    trial_id = int(q.trial_summaries(store, sid)["trial_id"].iloc[0])
    store.heartbeat(trial_id)
    assert q.sweep_fingerprint(store, sid) != before


def test_user_input_is_bound_never_spliced(filled: tuple[Store, int]) -> None:
    store, sid = filled
    evil = "loss' OR '1'='1"
    assert q.curve_bands(store, sid, name=evil, scope="step", x_max=100.0).empty
    assert q.curve_bands(store, sid, name="loss", scope="step",
                         filters=AxisFilters(optimizer=["sgd' OR 1=1 --"]), x_max=100.0).empty
    with pytest.raises(ValueError, match="cannot group by"):
        q.curve_bands(store, sid, name="loss", scope="step", group_by=["id; DROP TABLE x"])
    with pytest.raises(ValueError, match="unknown x axis"):
        q.curve_bands(store, sid, name="loss", scope="step", x="value")
    with pytest.raises(ValueError, match="unknown scope"):
        q.curve_bands(store, sid, name="loss", scope="batch")


def test_trial_summaries_keep_json(filled: tuple[Store, int]) -> None:
    store, sid = filled
    frame = q.trial_summaries(store, sid)
    assert len(frame) == 6 and frame["params"].iloc[0]["optimizer"]["lr"] == pytest.approx(0.1)
    diverged = frame[frame["status"] == "diverged"].iloc[0]
    assert diverged["final"]["val_loss"] == math.inf  # faithful, not NULL
    assert diverged["diverged_step"] == 50


def test_importance_absent_then_read(filled: tuple[Store, int]) -> None:
    store, sid = filled
    assert q.cell_importance(store, sid) is None  # no tuned cell stored
    store.upsert_cell(
        sid, "c1", label="linreg/adam/constant/none", workload="linreg", optimizer="adam",
        scheduler="constant", regularizer="none", study_name="s", objective_metric="val_loss",
        objective_mode="min", n_tuning=4, importance={"optimizer.lr": 0.8, "b": 0.2},
    )
    cells = q.tuned_cells(store, sid)
    assert cells is not None and cells["n_tuning"].tolist() == [4]
    imp = q.cell_importance(store, sid)
    assert imp is not None
    assert dict(zip(imp["param"], imp["importance"], strict=True)) == {
        "optimizer.lr": 0.8, "b": 0.2}


def test_old_schema_without_tuning_tables(tmp_path: Path) -> None:
    """A database at the first revision (before tuning) has no ``bench_cells`` and no
    ``bench_trials.objective``: the dashboard, which never migrates, still reads it."""
    from alembic import command

    from bench_service.store.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url=url), "0001")
    engine = create_engine(url)
    try:
        assert q.schema_ready(engine)
        assert q.tuned_cells(engine, 1) is None and q.cell_importance(engine, 1) is None
        frame = q.trial_summaries(engine, 1)
        assert frame.empty and "objective" in frame.columns
    finally:
        engine.dispose()


def test_bucket_width() -> None:
    assert q.bucket_width("step", 1990, 200, points_per_run=200) == 1
    assert q.bucket_width("step", 19990, 200, points_per_run=2000) == 100
    assert q.bucket_width("epoch", None, 200) == 1
    assert q.bucket_width("wall_time", 10.0, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("trial_id", [0, -1, 2**31, 2**63, 10**30])
def test_trial_detail_out_of_range_is_none_on_postgres(pg_url: str, trial_id: int) -> None:
    """PostgreSQL's 32-bit ids made ``?trial=2147483648`` an error that showed the SQL."""
    from bench_service.store import Store

    store = Store(pg_url)
    try:
        assert q.trial_detail(store, trial_id) is None
    finally:
        store.close()
