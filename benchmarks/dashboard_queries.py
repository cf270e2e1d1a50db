"""Time the dashboard's queries on a big sweep, on SQLite and on PostgreSQL.

Fills a database with a synthetic sweep (by default 1,000 trials × 200 points per metric:
2 workloads × 5 optimizers × 4 schedulers × 5 regularizers × 5 seeds, six metrics per trial,
1.2 million metric points, about 2 % of the runs diverging) through the ``Store`` API, the same
bulk inserts a sweep uses, then runs the queries behind each dashboard page exactly as the
pages do on a cold cache and prints their wall times. The issue's target: every page of such
a sweep renders in under 2 s.

    python benchmarks/dashboard_queries.py                  # both backends
    python benchmarks/dashboard_queries.py --backend sqlite --trials 200

PostgreSQL runs in a fresh database created next to ``--pg-url``'s and dropped afterwards;
it is skipped (with the reason) when the server cannot be reached.

The curves are synthetic but shaped like real ones (noisy exponential decay towards a floor
that depends on the optimizer and the seed; the schedulers' learning-rate formulas; accuracy
rising as the loss falls; wall-clock time that grows with the step at an optimizer-dependent
speed), so the downsampling and aggregation work on realistic data. No training happens.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store
from bench_service.store import dashboard_queries as q
from bench_service.store._frames import AxisFilters

WORKLOADS = ["mlp_digits", "cnn_digits"]
OPTIMIZERS = ["sgd", "momentum", "adam", "adamw", "yogi"]
SCHEDULERS = ["constant", "cosine", "step", "exponential"]
REGULARIZERS = ["none", "l2", "weight_decay", "dropout", "l1"]
SEEDS = [0, 1, 2, 3, 4]
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _lr(scheduler: str, epoch: int, epochs: int, lr0: float) -> float:
    if scheduler == "cosine":
        return 0.5 * lr0 * (1 + math.cos(math.pi * epoch / epochs))
    if scheduler == "step":
        return lr0 * 0.5 ** (epoch // max(1, epochs // 4))
    if scheduler == "exponential":
        return lr0 * 0.98**epoch
    return lr0


def synthetic_trial(
    index: int, cell: tuple[str, str, str, str], seed: int, points: int
) -> tuple[list[MetricPoint], dict[str, Any]]:
    """Metric points and the result summary of one synthetic trial."""
    workload, optimizer, scheduler, regularizer = cell
    reg_effect = {"none": 0.0, "l2": -0.01, "weight_decay": -0.012, "dropout": 0.005,
                  "l1": 0.01}.get(regularizer, 0.0)
    rng = np.random.default_rng(index * 7919 + seed)
    log_every = 10
    steps = np.arange(1, points + 1) * log_every
    total = int(steps[-1])
    epochs = points
    steps_per_epoch = total // epochs
    rate = {"sgd": 1.5, "momentum": 3.0, "adam": 4.0, "adamw": 4.2, "yogi": 3.6}[optimizer]
    floor = 0.05 + 0.02 * OPTIMIZERS.index(optimizer) + 0.01 * rng.random()
    start = 2.3 if workload.endswith("digits") else 1.0
    speed = 2e-4 * (1 + 0.3 * OPTIMIZERS.index(optimizer)) * (1 + 0.1 * rng.random())
    decay = np.exp(-rate * steps / total)
    train = floor + (start - floor) * decay
    train = train * np.exp(rng.normal(0, 0.05, size=points))
    grad = (0.5 + 2 * decay) * np.exp(rng.normal(0, 0.1, size=points))
    diverge_at: int | None = None
    if rng.random() < 0.02:  # a few runs blow up part-way through
        diverge_at = int(rng.integers(points // 10, points // 2))
        train[diverge_at:] = np.inf
    wall = steps * speed
    pts: list[MetricPoint] = []
    n_step = points if diverge_at is None else diverge_at + 1
    for i in range(n_step):
        epoch = min(epochs - 1, int(steps[i]) // steps_per_epoch)
        pts.append(MetricPoint("train_loss", float(train[i]), int(steps[i]), epoch,
                               float(wall[i]), "step"))
        if i < n_step - 1 or diverge_at is None:
            pts.append(MetricPoint("grad_norm", float(grad[i]), int(steps[i]), epoch,
                                   float(wall[i]), "step"))
    last_epoch = epochs if diverge_at is None else int(steps[diverge_at]) // steps_per_epoch
    val = floor * 1.1 + reg_effect + (start - floor) * np.exp(
        -rate * np.arange(1, epochs + 1) / epochs)
    val = val * np.exp(rng.normal(0, 0.03, size=epochs))
    for e in range(last_epoch):
        step_e, wall_e = (e + 1) * steps_per_epoch, (e + 1) * steps_per_epoch * speed
        pts.append(MetricPoint("lr", _lr(scheduler, e, epochs, 0.1), e * steps_per_epoch, e,
                               e * steps_per_epoch * speed, "epoch"))
        pts.append(MetricPoint("train_loss", float(train[min(e, points - 1)]), step_e, e,
                               wall_e, "epoch"))
        pts.append(MetricPoint("val_loss", float(val[e]), step_e, e, wall_e, "epoch"))
        pts.append(MetricPoint("val_accuracy", float(max(0.0, 1 - val[e] / 2.5)), step_e, e,
                               wall_e, "epoch"))
    if diverge_at is None:
        final = {"train_loss": float(train[-1]), "val_loss": float(val[-1]),
                 "val_accuracy": float(1 - val[-1] / 2.5)}
        acc = 1 - val / 2.5
        hit = np.nonzero(acc >= 0.9)[0]
        summary = {
            "status": "completed", "final": final,
            "best": {"val_loss": float(val.min()), "val_accuracy": float(acc.max()),
                     "train_loss": float(train.min())},
            "steps": total, "epochs": epochs, "wall_time": float(wall[-1]),
            "step_to_target": int((hit[0] + 1) * steps_per_epoch) if hit.size else None,
            "time_to_target": float((hit[0] + 1) * steps_per_epoch * speed) if hit.size
            else None,
        }
    else:
        summary = {
            "status": "diverged", "final": {"train_loss": math.inf},
            "best": {"train_loss": float(np.min(train[:diverge_at]))},
            "steps": int(steps[diverge_at]), "epochs": last_epoch,
            "wall_time": float(wall[diverge_at]), "diverged_step": int(steps[diverge_at]),
        }
    return pts, summary


def fill(store: Store, name: str, n_trials: int, points: int) -> float:
    """Create the synthetic sweep ``name`` with ``n_trials`` trials; returns seconds taken."""
    t0 = time.perf_counter()
    cells = [
        (w, o, s, r)
        for w in WORKLOADS for o in OPTIMIZERS for s in SCHEDULERS for r in REGULARIZERS
    ]
    plan: list[tuple[tuple[str, str, str, str], int]] = [
        (cells[i // len(SEEDS) % len(cells)], SEEDS[i % len(SEEDS)]) for i in range(n_trials)
    ]
    new: list[NewTrial] = []
    for i, (cell, seed) in enumerate(plan):
        key = hashlib.sha256("/".join(cell).encode()).hexdigest()
        config = {"workload": {"name": cell[0], "params": {}},
                  "optimizer": {"name": cell[1], "params": {"lr": 0.1}},
                  "scheduler": {"name": cell[2], "params": {}},
                  "regularizer": {"name": cell[3], "params": {}},
                  "seed": seed, "budget": {"epochs": points}, "replica": i}
        new.append(NewTrial(
            trial_hash=hashlib.sha256(f"{key}/{seed}/{i}".encode()).hexdigest(),
            cell_key=key, workload=cell[0], optimizer=cell[1], scheduler=cell[2],
            regularizer=cell[3], seed=seed, config=config,
            params={"optimizer": {"lr": 0.1}, "scheduler": {}, "regularizer": {}},
        ))
    sweep = store.create_sweep(name, {"name": name, "synthetic": True}, "0" * 64, new)
    store.set_sweep_status(sweep.id, "running")
    trials = store.trials_to_run(sweep.id, statuses=("pending",))
    for i, trial in enumerate(trials):
        cell, seed = plan[i]
        pts, summary = synthetic_trial(i, cell, seed, points)
        store.start_trial(trial.id, host="bench-host", device="cpu", versions={"python": "3"})
        store.append_metrics(trial.id, pts)
        store.finish_trial(trial.id, summary)
    store.set_sweep_status(sweep.id, "completed")
    return time.perf_counter() - t0


def _timed(label: str, fn: Callable[[], Any], out: dict[str, float]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    out[label] = time.perf_counter() - t0
    return result


def page_queries(store: Store, name: str) -> dict[str, dict[str, float]]:
    """Run each page's queries as the page does on a cold cache; seconds per query.

    Called twice; the second pass is reported, so that one-off costs of a fresh process
    (opening connections, compiling statements) do not count against the first page.
    """
    info = store.get_sweep(name)
    assert info is not None
    sid = info.id
    timings: dict[str, dict[str, float]] = {}

    t: dict[str, float] = {}
    _timed("sweeps_frame", lambda: q.sweeps_frame(store), t)
    _timed("sweep_fingerprint", lambda: q.sweep_fingerprint(store, sid), t)
    timings["Sweeps"] = t

    t = {}
    _timed("sweep_fingerprint", lambda: q.sweep_fingerprint(store, sid), t)
    catalog = _timed("metric_catalog", lambda: q.metric_catalog(store, sid), t)
    trials = _timed("trial_summaries", lambda: q.trial_summaries(store, sid), t)
    row = catalog[(catalog["name"] == "val_loss") & (catalog["scope"] == "epoch")].iloc[0]
    lr_row = catalog[(catalog["name"] == "lr") & (catalog["scope"] == "epoch")].iloc[0]
    groups = ["optimizer", "workload"]
    _timed("curve_bands val_loss/step", lambda: q.curve_bands(
        store, sid, name="val_loss", scope="epoch", x="step", group_by=groups,
        max_points=200, x_max=float(row["max_step"]),
        points_per_run=int(row["points_per_run"])), t)
    _timed("curve_bands lr/step", lambda: q.curve_bands(
        store, sid, name="lr", scope="epoch", x="step", group_by=groups,
        max_points=200, x_max=float(lr_row["max_step"]),
        points_per_run=int(lr_row["points_per_run"])), t)
    _timed("divergence_points", lambda: q.divergence_points(
        store, sid, name="val_loss", scope="epoch"), t)
    timings["Convergence (val_loss, by optimizer × workload)"] = t

    t = {}
    _timed("sweep_fingerprint", lambda: q.sweep_fingerprint(store, sid), t)
    tl_row = catalog[(catalog["name"] == "train_loss") & (catalog["scope"] == "step")].iloc[0]
    _timed("curve_bands train_loss/step by cell", lambda: q.curve_bands(
        store, sid, name="train_loss", scope="step", x="step",
        group_by=["workload", "optimizer", "scheduler", "regularizer"],
        max_points=200, x_max=float(tl_row["max_step"]),
        points_per_run=int(tl_row["points_per_run"])), t)
    _timed("curve_bands train_loss/wall_time", lambda: q.curve_bands(
        store, sid, name="train_loss", scope="step", x="wall_time",
        group_by=["optimizer", "workload"], max_points=200,
        x_max=float(tl_row["max_wall_time"])), t)
    _timed("divergence_points", lambda: q.divergence_points(
        store, sid, name="train_loss", scope="step"), t)
    timings["Convergence (train_loss per step, by cell / wall-clock)"] = t

    t = {}
    few = trials["trial_id"].head(100).tolist()
    _timed("run_curves 100 runs", lambda: q.run_curves(
        store, sid, name="train_loss", scope="step", x="step", trial_ids=few,
        filters=AxisFilters(workload="mlp_digits"), max_points=200,
        x_max=float(tl_row["max_step"]), points_per_run=int(tl_row["points_per_run"])), t)
    timings["Convergence (individual runs)"] = t

    t = {}
    _timed("sweep_fingerprint", lambda: q.sweep_fingerprint(store, sid), t)
    _timed("trial_summaries", lambda: q.trial_summaries(store, sid), t)
    timings["Leaderboard / Tuning"] = t

    t = {}
    _timed("cell_importance", lambda: q.cell_importance(store, sid), t)
    timings["Tuning (importance lookup)"] = t

    t = {}
    one = int(trials["trial_id"].iloc[len(trials) // 2])
    _timed("trial_detail", lambda: q.trial_detail(store, one), t)
    _timed("trial_points", lambda: q.trial_points(store, one), t)
    timings["Trial"] = t
    return timings


def render_pages(url: str, name: str) -> dict[str, tuple[float, float]]:
    """Render each page with Streamlit's ``AppTest`` (the app's real code path: queries,
    pandas, figures); seconds for a cold cache and for a rerun, per page."""
    import logging
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for name in ("streamlit", "streamlit.runtime"):  # AppTest's bare-mode chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ["BENCH_DB_URL"] = url
    views = [
        ("Sweeps", None, {}),
        ("Convergence (val_loss by optimizer × workload, LR strip)", "convergence", {}),
        ("Convergence (train_loss per step by cell)", "convergence",
         {"metric": "train_loss@step", "group": "cell"}),
        ("Convergence (train_loss vs wall-clock)", "convergence",
         {"metric": "train_loss@step", "x": "wall_time"}),
        ("Leaderboard", "leaderboard", {}),
        ("Tuning", "tuning", {}),
        ("Trial", "trial", {}),
    ]
    out: dict[str, tuple[float, float]] = {}
    for label, page, params in views:
        app = root / "bench_service" / "dashboard" / "app.py"
        at = AppTest.from_file(str(app), default_timeout=120)
        at.query_params["sweep"] = name
        at.run()  # the entry page, to be able to switch
        for key, value in params.items():
            at.query_params[key] = value
        if page is not None:
            at.switch_page(f"views/{page}.py")
        st.cache_data.clear()
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        assert not at.exception, [e.message for e in at.exception]
        t0 = time.perf_counter()
        at.run()
        out[label] = (cold, time.perf_counter() - t0)
    return out


def _report(backend: str, fill_s: float, timings: dict[str, dict[str, float]]) -> None:
    print(f"\n== {backend}: filled in {fill_s:.1f} s")
    for page, queries in timings.items():
        total = sum(queries.values())
        print(f"  {page}: {total * 1000:8.1f} ms")
        for label, secs in queries.items():
            print(f"      {label:<40} {secs * 1000:8.1f} ms")


@contextmanager
def _pg_database(admin_url: str) -> Iterator[str | None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bench_dash_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"\n== postgresql: skipped, server unreachable at {admin_url}: "
              f"{str(exc).splitlines()[0]}")
        admin.dispose()
        yield None
        return
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_backend(url: str, backend: str, n_trials: int, points: int, render: bool) -> None:
    store = Store(url)
    try:
        fill_s = fill(store, "big", n_trials, points)
        if backend == "postgresql":
            from sqlalchemy import text

            with store.engine.connect() as conn:  # fresh statistics, as autovacuum would
                conn.execute(text("ANALYZE"))
                conn.commit()
        page_queries(store, "big")  # first pass: connection pool, statement caches
        _report(backend, fill_s, page_queries(store, "big"))
        if render:
            print(f"  rendered pages ({backend}, AppTest: cold cache / rerun):")
            for label, (cold, warm) in render_pages(store.url, "big").items():
                print(f"      {label:<56} {cold * 1000:7.0f} ms / {warm * 1000:5.0f} ms")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--points", type=int, default=200, help="points per metric per trial")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_TEST_PG_URL", PG_DEFAULT))
    parser.add_argument("--no-render", action="store_true",
                        help="time the queries only, not the pages rendered by AppTest")
    args = parser.parse_args(argv)
    print(f"synthetic sweep: {args.trials} trials × {args.points} points per metric "
          f"(6 metrics: train_loss per step and per epoch, grad_norm, lr, val_loss, "
          f"val_accuracy)")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run_backend(f"sqlite:///{tmp}/bench.db", "sqlite", args.trials, args.points,
                        not args.no_render)
    if args.backend in ("postgresql", "both"):
        with _pg_database(args.pg_url) as url:
            if url is not None:
                run_backend(url, "postgresql", args.trials, args.points, not args.no_render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
