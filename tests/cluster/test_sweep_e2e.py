"""`bench run` end to end: real local Ray, real SQLite and PostgreSQL, real processes."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import bench_cmd, cli_env, run_bench

from bench_service.cli import main as bench_main
from bench_service.store import Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

GRID = {
    "name": "e2e",
    "workloads": ["linreg", "quadratic"],
    "optimizers": ["sgd", "adam", {"name": "sgd", "params": {"lr": 50.0}}],
    "schedulers": ["constant", {"name": "step", "params": {"step_size": 1, "gamma": 0.5}}],
    "seeds": [0, 1],
    "budget": {"epochs": 3},
}


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def check_grid_results(url: str) -> None:
    store = Store(url)
    trials = store.trials_frame("e2e")
    assert len(trials) == 2 * 3 * 2 * 2
    assert trials["trial_hash"].is_unique
    diverging = trials["params"].map(lambda p: p["optimizer"]["lr"] == 50.0)
    assert set(trials.loc[diverging, "status"]) == {"diverged"}
    assert set(trials.loc[~diverging, "status"]) == {"completed"}
    assert trials.loc[diverging, "diverged_step"].notna().all()
    curves = store.curves_frame("e2e", names=["lr"], scope="epoch")
    for trial_id, pts in curves.groupby("trial_id"):
        row = trials.set_index("trial_id").loc[trial_id]
        lr0 = row["params"]["optimizer"]["lr"]
        gamma = 0.5 if row["scheduler"] == "step" else 1.0
        expected = [lr0 * gamma**e for e in pts["epoch"]]
        assert list(pts["value"]) == pytest.approx(expected, rel=1e-9)
    # every completed trial stored each epoch's validation loss exactly once
    val = store.curves_frame("e2e", names=["val_loss"], scope="epoch", status="completed")
    assert (val.groupby("trial_id").size() == 3).all()
    assert set(store.status_counts(store.get_sweep("e2e").id)) >= {"completed", "diverged"}
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_grid_sweep_end_to_end(backend: str, tmp_path: Path, request: pytest.FixtureRequest
                               ) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}" if backend == "sqlite" else \
        request.getfixturevalue("pg_url")
    spec = write_spec(tmp_path / "grid.yaml", GRID)
    proc = run_bench("run", str(spec), "--db", url, "--num-cpus", "2", cwd=tmp_path,
                     shared_ray=True)
    assert proc.returncode == 0, proc.stderr
    assert "24 trials" in proc.stdout and "finished" in proc.stdout
    assert "trial" in proc.stderr  # the tqdm progress bar
    check_grid_results(url)
    # One worker process per CPU slot for the whole sweep. A trial that waited on the writer
    # with ray.get handed its CPU back, so Ray started extra workers (a torch import each)
    # and killed the surplus as idle: the sweep churned through processes.
    store = Store(url)
    pids = {store.trial(int(t)).versions["worker_pid"]  # type: ignore[index]
            for t in store.trials_frame("e2e")["trial_id"]}
    store.close()
    assert 1 <= len(pids) <= 2, pids
    # run again: the sweep resumes, nothing left to do, nothing stored twice
    again = run_bench("run", str(spec), "--db", url, cwd=tmp_path, shared_ray=True)
    assert again.returncode == 0, again.stderr
    assert "nothing to run" in again.stdout
    check_grid_results(url)


def test_default_database_is_bench_db_in_the_working_directory(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tiny.yaml", {
        "name": "tiny", "workloads": ["linreg"], "optimizers": ["sgd"], "budget": {"epochs": 1},
    })
    proc = run_bench("run", str(spec), "--no-progress", cwd=tmp_path, shared_ray=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bench.db").exists()
    out = run_bench("results", "--sweep", "tiny", "--format", "json", cwd=tmp_path)
    rows = json.loads(out.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "completed"


BAD_SPECS = [
    ({"optimizers": ["adamm"]}, "optimizers[0].name", "adam"),
    ({"optimizers": [{"name": "sgd", "params": {"lr": -0.1}}]}, "optimizers[0].params.lr", ">"),
    ({"optimizers": []}, "optimizers", ""),
    ({"seeds": "zero"}, "seeds", ""),
    ({"budget": {"epochs": 2, "steps": 3}}, "budget", ""),
    ({"regularizers": ["batchnorm"], "workloads": ["quadratic"]}, "batchnorm",
     "skip_incompatible"),
]


@pytest.mark.parametrize(("change", "field", "hint"), BAD_SPECS)
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(
    change: dict, field: str, hint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "bad.yaml", {**GRID, **change})
    db = tmp_path / "bad.db"
    assert bench_main(["run", str(spec), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert field in err and hint in err
    assert "Traceback" not in err
    assert not db.exists()


def test_bad_yaml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nworkloads: [linreg\n")
    assert bench_main(["run", str(bad), "--db", str(tmp_path / "x.db")]) == 2
    assert "line" in capsys.readouterr().err
    assert bench_main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_changed_spec_is_refused_with_a_diff_unless_renamed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    small = {"name": "grow", "workloads": ["linreg"], "optimizers": ["sgd"],
             "budget": {"epochs": 1}}
    assert run_bench("run", str(write_spec(tmp_path / "a.yaml", small)), "--db", url,
                     "--no-progress", shared_ray=True).returncode == 0
    changed = write_spec(tmp_path / "b.yaml", {**small, "optimizers": ["sgd", "adam"],
                                               "budget": {"epochs": 2}})
    proc = run_bench("run", str(changed), "--db", url, "--no-progress", shared_ray=True)
    assert proc.returncode == 2
    assert "adam" in proc.stderr and "budget.epochs" in proc.stderr and "--name" in proc.stderr
    assert len(Store(url).trials_frame("grow")) == 1  # untouched
    proc = run_bench("run", str(changed), "--db", url, "--name", "grow-2", "--no-progress",
                     shared_ray=True)
    assert proc.returncode == 0, proc.stderr
    assert len(Store(url).trials_frame("grow-2")) == 2


def test_results_exports_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    spec = write_spec(tmp_path / "grid.yaml", {**GRID, "seeds": [0]})
    assert run_bench("run", str(spec), "--db", url, "--no-progress",
                     shared_ray=True).returncode == 0
    assert bench_main(["results", "--sweep", "e2e", "--db", url, "--optimizer", "adam",
                       "--format", "csv"]) == 0
    from io import StringIO

    df = pd.read_csv(StringIO(capsys.readouterr().out))
    assert len(df) == 4 and set(df["optimizer"]) == {"adam"}
    assert bench_main(["results", "--sweep", "e2e", "--db", url, "--status", "diverged",
                       "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and all(r["status"] == "diverged" for r in rows)
    out = tmp_path / "curves.parquet"
    assert bench_main(["results", "--sweep", "e2e", "--db", url, "--curves", "--metric",
                       "val_loss", "--format", "parquet", "--output", str(out)]) == 0
    curves = pd.read_parquet(out)
    assert set(curves["name"]) == {"val_loss"} and {"step", "epoch", "value"} <= set(curves)
    assert bench_main(["results", "--sweep", "e2e", "--db", url]) == 0
    table = capsys.readouterr().out
    assert "final_val_loss" in table and "diverged" in table
    # --best on a plain grid: cells ranked within each workload by their final val_loss
    assert bench_main(["results", "--sweep", "e2e", "--db", url, "--best", "--format",
                       "json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert len(best) == 12 and {r["rank"] for r in best if r["workload"] == "linreg"} >= {1}
    worst = [r for r in best if r["n_diverged"] == 1]
    # the two diverged linreg cells share the last rank (5: competition ranking of ties)
    assert len(worst) == 4 and all(r["rank"] == 5 for r in worst if r["workload"] == "linreg")
    assert bench_main(["results", "--sweep", "nope", "--db", url]) == 2
    assert "unknown sweep 'nope'" in capsys.readouterr().err
    assert bench_main(["sweeps", "--db", url]) == 0
    assert "e2e" in capsys.readouterr().out
    # the Python API returns the same rows
    from bench_service import load_curves, load_trials

    assert len(load_trials("e2e", db=url)) == 12
    assert set(load_curves("e2e", db=url, names=["lr"])["name"]) == {"lr"}


#: A sweep the tests interrupt (kill, Ctrl-C, SIGTERM, a hung driver) after its first few
#: trials and then resume. 16 trials: the interrupt comes after 2-3 finished (a condition),
#: leaving 13+ unfinished even where they train fast; every trial more is only more to resume.
SLOW = {
    "name": "slow", "workloads": ["mlp_digits"], "optimizers": ["sgd", "adam"],
    "schedulers": ["constant", "cosine"], "seeds": list(range(4)), "budget": {"epochs": 6},
}
SLOW_TRIALS = 2 * 2 * 4


def _counts(db: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM bench_trials GROUP BY status"))
    except sqlite3.OperationalError:
        return {}


def _start(spec: Path, db: Path, cwd: Path, shared_ray: bool = True) -> subprocess.Popen[str]:
    """``bench run`` as a real process (its own session), on the shared Ray head by default."""
    return subprocess.Popen(
        bench_cmd("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                  shared_ray=shared_ray),
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def _wait_for(pred, timeout: float = 600) -> None:  # type: ignore[no-untyped-def]
    """Poll ``pred`` until it holds. The timeout only stops a test that hangs: on a loaded
    2-core machine one epoch of mlp_digits can take seconds, so it is never a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def _kill_session(proc: subprocess.Popen[str]) -> None:
    """Kill the driver's whole session: the driver and the local Ray it started."""
    subprocess.run(["pkill", "-9", "-s", str(proc.pid)], check=False)


def test_resume_after_the_driver_is_killed(tmp_path: Path) -> None:
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    proc = _start(spec, db, tmp_path)
    try:
        _wait_for(lambda: _counts(db).get("completed", 0) >= 3)
        os.kill(proc.pid, signal.SIGKILL)  # a real SIGKILL of the driver mid-sweep
        proc.wait(timeout=30)
    finally:
        _kill_session(proc)
    before = _counts(db)
    assert 3 <= before.get("completed", 0) < SLOW_TRIALS
    done_before = set(Store(str(db)).trials_frame("slow", status="completed")["trial_id"])
    again = run_bench("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                      timeout=1800, shared_ray=True)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    store = Store(str(db))
    trials = store.trials_frame("slow")
    assert len(trials) == SLOW_TRIALS and set(trials["status"]) == {"completed"}
    assert trials["trial_hash"].is_unique
    # finished work was kept, not re-run
    kept = trials[trials["trial_id"].isin(done_before)]
    assert (kept["attempt"] == 1).all()
    # every trial's curve is stored exactly once (no duplicate points from the killed attempt)
    val = store.curves_frame("slow", names=["val_loss"], scope="epoch")
    assert (val.groupby("trial_id").size() == 6).all()
    assert not val.duplicated(["trial_id", "step"]).any()


def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    proc = _start(spec, db, tmp_path)
    try:
        _wait_for(lambda: _counts(db).get("completed", 0) >= 2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        _kill_session(proc)
    assert proc.returncode == 130, err
    assert "cancelled" in out
    counts = _counts(db)
    assert counts.get("running", 0) == 0 and counts.get("pending", 0) == 0
    assert counts.get("cancelled", 0) > 0 and counts.get("completed", 0) >= 2
    sweep = Store(str(db)).get_sweep("slow")
    assert sweep is not None and sweep.status == "cancelled"


def test_two_sweeps_at_once_into_one_sqlite_file_lose_no_rows(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    specs = [write_spec(tmp_path / f"{n}.yaml", {**GRID, "name": n, "seeds": [0]})
             for n in ("one", "two")]
    procs = [_start(s, db, tmp_path) for s in specs]
    try:
        for p in procs:
            p.communicate(timeout=1200)
            assert p.returncode == 0
    finally:
        for p in procs:
            _kill_session(p)
    store = Store(str(db))
    for name in ("one", "two"):
        trials = store.trials_frame(name)
        assert len(trials) == 12
        curves = store.curves_frame(name, names=["val_loss"], scope="epoch", status="completed")
        assert (curves.groupby("trial_id").size() == 3).all()
        assert curves["trial_id"].nunique() == 8
    assert math.isfinite(float(store.trials_frame("one")["wall_time"].sum()))


def _live_points(db: Path) -> int:
    """Metric points stored for trials that are still running."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM bench_metrics m JOIN bench_trials t ON t.id = m.trial_id "
                "WHERE t.status = 'running'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _live_epochs(db: Path) -> list[int]:
    """Epochs of validation loss stored for trials that are still running."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return [int(e) for (e,) in conn.execute(
                "SELECT m.epoch FROM bench_metrics m JOIN bench_trials t ON t.id = m.trial_id "
                "WHERE t.status = 'running' AND m.name = 'val_loss' AND m.scope = 'epoch' "
                "ORDER BY m.epoch")]
    except sqlite3.OperationalError:
        return []


def test_metrics_reach_the_database_while_trials_run(tmp_path: Path) -> None:
    # A trial far longer than the test, so "while it runs" never depends on how fast this
    # machine trains: points must arrive in batches while it runs, then SIGTERM ends it.
    endless = {"name": "live", "workloads": ["mlp_digits"], "optimizers": ["adam"],
               "seeds": [0], "budget": {"epochs": 100_000}}
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "live.yaml", endless)
    proc = _start(spec, db, tmp_path)
    try:
        _wait_for(lambda: _live_points(db) > 0)  # streamed, not at the end
        first = len(_live_epochs(db))
        _wait_for(lambda: len(_live_epochs(db)) > first)  # and again, batch after batch
        proc.terminate()
        _out, err = proc.communicate(timeout=300)
    finally:
        _kill_session(proc)
    assert proc.returncode == 143, err
    store = Store(str(db))
    [trial] = store.trials_frame("live").to_dict("records")
    assert trial["status"] == "cancelled"
    epochs = list(store.curves_frame("live", names=["val_loss"], scope="epoch")["epoch"])
    assert len(epochs) > first and epochs == list(range(epochs[0], epochs[0] + len(epochs)))
