"""Packed sweeps end to end: real `bench run` (local Ray), real SQLite, real SIGKILL.

A packed sweep must store what the unpacked one stores: the same trials, statuses and curves.
The unpacked reference is ``run_trial`` of each stored config in this process (what an
unpacked sweep's task runs), so each test starts Ray once. Sweeps run in float32 (the
default), where a packed step rounds a little differently from the unpacked one: curves
agree to a relative 1e-4 (float64 gives ~1e-16, tests/engine/test_packed.py), accuracies to
3 of the 360 validation images (an argmax near a tie can flip).
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from _helpers import bench_cmd, cli_env, run_bench

from bench_service.cluster.loop import Job
from bench_service.cluster.packing import pack_jobs, pack_size
from bench_service.engine.runner import run_trial
from bench_service.store import Store
from bench_service.sweep import parse_spec, plan_sweep

RTOL = 1e-4
#: Validation accuracy may differ by a few of digits' 360 validation images (near-ties).
ACCURACY_ATOL = 3 / 360 + 1e-9
MLP = {"name": "mlp_digits", "params": {"hidden": 16}}
PACKED = {
    "name": "packed",
    "workloads": [MLP],
    "optimizers": ["adam", {"name": "sgd", "params": {"lr": 1e4}}],
    "schedulers": ["constant", {"name": "cosine", "params": {"interval": "step"}}],
    "regularizers": ["none", "batchnorm"],
    "seeds": [0, 1],
    "budget": {"steps": 30},
    "execution": {"pack": 4},
}


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_packs_group_by_key_and_keep_unpackable_alone() -> None:
    plan = plan_sweep(parse_spec(PACKED))
    jobs = [Job(i, t.config.to_dict()) for i, t in enumerate(plan.trials)]
    packs = list(pack_jobs(jobs, 4))
    assert sorted(m.trial_id for p in packs for m in p.members) == list(range(len(jobs)))
    for p in packs:
        regs = {m.config["regularizer"]["name"] for m in p.members}
        opts = {m.config["optimizer"]["name"] for m in p.members}
        assert len(regs) == 1 and len(opts) == 1 and len(p.members) <= 4
        if regs == {"batchnorm"}:
            assert len(p.members) == 1
    assert pack_size("auto", {"device": "cpu"}) == 0  # CPU stays unpacked by default
    assert pack_size(None, None) == 0 and pack_size(8, None) == 8


def test_packed_sweep_stores_what_the_unpacked_one_stores(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    spec = write_spec(tmp_path / "packed.yaml", PACKED)
    proc = run_bench("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                     cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    store = Store(str(db))
    trials = store.trials_frame("packed")
    plan = plan_sweep(parse_spec(PACKED))
    assert sorted(trials["trial_hash"]) == sorted(t.trial_hash for t in plan.trials)
    curves = store.curves_frame("packed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's 1-CPU tasks: BatchNorm's sums depend on it
    try:
        _compare(store, trials, curves)
    finally:
        torch.set_num_threads(threads)
    assert set(trials["status"]) == {"completed", "diverged"}
    store.close()
    # the reason is visible in `bench results`
    shown = run_bench("results", "--sweep", "packed", "--db", str(db), "--format", "csv")
    assert shown.returncode == 0, shown.stderr
    table = pd.read_csv(io.StringIO(shown.stdout))
    assert table["execution"].str.contains("batchnorm").sum() == 8


def _compare(store: Store, trials: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Each stored trial against ``run_trial`` of its config: status, steps, curves."""
    for row in trials.itertuples():
        alone = run_trial(store.trial(int(row.trial_id)).config)
        assert row.status == alone.status, row
        diverged = None if pd.isna(row.diverged_step) else int(row.diverged_step)
        assert diverged == alone.diverged_step
        mine = curves[curves["trial_id"] == row.trial_id]
        got = sorted(zip(mine["name"], mine["scope"], mine["step"], mine["value"],
                         strict=True))
        want = sorted((p.name, p.scope, p.step, p.value) for p in alone.metrics)
        assert [g[:3] for g in got] == [w[:3] for w in want]
        for g, w in zip(got, want, strict=True):
            # float32 rounding can flip the argmax of a near-tie: a few of 360 images
            tol = ACCURACY_ATOL if g[0] == "val_accuracy" else 1e-6
            assert g[3] == pytest.approx(w[3], rel=RTOL, abs=tol), (row.trial_id, g, w)
        if row.regularizer == "batchnorm":
            assert row.execution.startswith("unpacked: regularizer 'batchnorm'")
        else:
            assert row.execution.startswith("packed (")


SLOW = {
    "name": "slowpack", "workloads": [MLP], "optimizers": ["sgd", "adam"],
    "seeds": list(range(6)), "budget": {"epochs": 6}, "execution": {"pack": 2},
}


def _counts(db: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM bench_trials GROUP BY status"))
    except sqlite3.OperationalError:
        return {}


def _wait_for(pred: Any, timeout: float = 900) -> None:
    """Poll ``pred`` until it holds; the timeout only stops a hung test (not a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_sigkill_mid_pack_then_resume_runs_every_member_once(tmp_path: Path) -> None:
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    proc = subprocess.Popen(
        bench_cmd("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress"),
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _counts(db).get("completed", 0) >= 2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-sweep, packs in flight
        proc.wait(timeout=60)
    finally:
        subprocess.run(["pkill", "-9", "-s", str(proc.pid)], check=False)
    done_before = set(Store(str(db)).trials_frame("slowpack", status="completed")["trial_id"])
    assert 2 <= len(done_before) < 12
    again = run_bench("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                      timeout=1800)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    store = Store(str(db))
    trials = store.trials_frame("slowpack")
    assert len(trials) == 12 and set(trials["status"]) == {"completed"}
    assert trials["trial_hash"].is_unique
    kept = trials[trials["trial_id"].isin(done_before)]
    assert (kept["attempt"] == 1).all()  # stored members were not run again
    val = store.curves_frame("slowpack", names=["val_loss"], scope="epoch")
    assert (val.groupby("trial_id").size() == 6).all()
    assert not val.duplicated(["trial_id", "step"]).any()
    store.close()


TUNED = {
    "name": "tunedpack", "workloads": [MLP], "optimizers": ["sgd", "adam"],
    "budget": {"steps": 25}, "execution": {"pack": 3},
    "tuning": {"trials_per_cell": 4, "sampler": "random", "pruner": "none",
               "final_seeds": [0, 1]},
}


def test_tuned_sweep_packs_batch_asked_trials_with_equal_budgets(tmp_path: Path) -> None:
    """Each cell's Optuna study is asked K trials at once per pack; budgets stay equal."""
    db = tmp_path / "bench.db"
    spec = write_spec(tmp_path / "tuned.yaml", TUNED)
    proc = run_bench("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                     cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    store = Store(str(db))
    trials = store.trials_frame("tunedpack")
    tuning = trials[trials["role"] == "tuning"]
    assert (tuning.groupby("cell_key").size() == 4).all() and tuning["cell_key"].nunique() == 2
    assert not tuning.duplicated(["cell_key", "number"]).any()
    # packs of 3, then the budget's last 1: every tuning trial ran packed
    assert tuning["execution"].str.startswith("packed (").all(), tuning["execution"].tolist()
    assert set(tuning["execution"]) == {"packed (3 members)", "packed (1 members)"}
    finals = trials[trials["role"] == "final"]
    assert (finals.groupby("cell_key").size() == 2).all()
    store.close()
