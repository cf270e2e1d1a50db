"""Tuned sweeps end to end: equal budgets per cell, finals, Optuna studies, resume, --best."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
from _helpers import run_bench
from optuna.trial import TrialState
from test_sweep_e2e import _counts, _kill_session, _start, _wait_for, write_spec

from bench_service.engine import run_trial
from bench_service.store import Store
from bench_service.sweep import tuning as T

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

BUDGET, FINAL_SEEDS = 3, [0, 1]
TUNED = {
    "name": "tuned",
    "workloads": ["quadratic", "linreg"],
    "optimizers": ["sgd", "adam", "momentum"],
    "schedulers": ["constant", "cosine"],
    "budget": {"epochs": 3},
    "tuning": {
        "trials_per_cell": BUDGET, "sampler": "random", "pruner": "median",
        "final_seeds": FINAL_SEEDS,
        # momentum searched up to lr 50: many of its trials diverge, and must still count
        "search_space": {"momentum": {"lr": {"low": 0.5, "high": 50.0, "log": True}}},
    },
}


def check_equal_budgets(url: str, name: str, budget: int, n_cells: int) -> None:
    store = Store(url)
    trials = store.trials_frame(name)
    tuning = trials[trials["role"] == "tuning"]
    counted = tuning[tuning["status"] != "cancelled"]
    per_cell = counted.groupby("cell_key").size()
    assert len(per_cell) == n_cells
    assert (per_cell == budget).all(), per_cell.to_dict()
    assert not tuning.duplicated(["cell_key", "number"]).any()
    finals = trials[trials["role"] == "final"]
    assert (finals.groupby("cell_key").size() == len(FINAL_SEEDS)).all()
    assert set(finals["status"]) <= {"completed", "diverged"}
    assert finals["trial_hash"].is_unique and trials["trial_hash"].is_unique
    cells = store.cells_frame(name)
    assert len(cells) == n_cells
    assert (cells["n_tuning"] == budget).all(), cells["n_tuning"].tolist()  # counted trials only
    # the studies are plain Optuna studies in the same database
    for study_name in cells["study_name"]:
        study = optuna.load_study(study_name=study_name, storage=url)
        assert T.budget_used(study) == budget
        assert not study.get_trials(states=(TrialState.RUNNING,))
    store.close()


# PostgreSQL only: SQLite is every other tuned e2e test's backend (the killed-driver case
# below, the SIGTERM case in test_signals).
@pytest.mark.parametrize("backend", ["postgresql"])
def test_tuned_sweep_gives_every_cell_the_same_budget(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}" if backend == "sqlite" else \
        request.getfixturevalue("pg_url")
    spec = write_spec(tmp_path / "tuned.yaml", TUNED)
    proc = run_bench("run", str(spec), "--db", url, "--num-cpus", "2", "--no-progress",
                     shared_ray=True)
    assert proc.returncode == 0, proc.stderr
    check_equal_budgets(url, "tuned", BUDGET, n_cells=12)
    store = Store(url)
    tuning = store.trials_frame("tuned", role="tuning")
    diverged = tuning[tuning["status"] == "diverged"]
    assert len(diverged) > 0 and diverged["objective"].isna().all()  # worst = inf (NULL)
    # diverged trials are COMPLETE with the worst value in Optuna, not failures
    cell = store.cells_frame("tuned").set_index("cell_key").loc[diverged.iloc[0]["cell_key"]]
    study = optuna.load_study(study_name=cell["study_name"], storage=url)
    assert any(t.state == TrialState.COMPLETE and t.value == math.inf for t in study.trials)
    # --best: one ranked row per cell with mean ± CI over the final seeds
    best = run_bench("results", "--sweep", "tuned", "--db", url, "--best", "--format", "json")
    assert best.returncode == 0, best.stderr
    rows = json.loads(best.stdout)
    assert len(rows) == 12
    for workload in ("quadratic", "linreg"):
        ranked = sorted(r["rank"] for r in rows if r["workload"] == workload)
        assert ranked[0] == 1 and len(ranked) == 6
    top = next(r for r in rows if r["workload"] == "linreg" and r["rank"] == 1)
    assert top["n"] + top["n_diverged"] == top["n_seeds"] == len(FINAL_SEEDS)
    assert top["ci95_low"] <= top["mean"] <= top["ci95_high"]
    assert "optimizer.lr=" in top["best_params"]
    if backend == "sqlite":
        # tuned SGD beats SGD at a deliberately bad fixed learning rate on the quadratic
        sgd = next(r for r in rows if r["workload"] == "quadratic" and r["optimizer"] == "sgd"
                   and r["scheduler"] == "constant")
        bad = run_trial({"workload": "quadratic", "optimizer": {"name": "sgd",
                         "params": {"lr": 1e-4}}, "budget": {"epochs": 3}})
        assert sgd["mean"] < bad.final["val_loss"]


def _start_mlp_tuning(tmp_path: Path, optimizers: list[str], trials_per_cell: int
                      ) -> tuple[Path, Path, subprocess.Popen[str]]:
    """Start `bench run` on a tuned mlp_digits sweep (2 schedulers per optimizer)."""
    spec = {**TUNED, "workloads": ["mlp_digits"], "optimizers": optimizers,
            "tuning": {**TUNED["tuning"], "trials_per_cell": trials_per_cell,
                       "search_space": {}},
            "budget": {"epochs": 4}}
    db, path = tmp_path / "bench.db", write_spec(tmp_path / "tuned.yaml", spec)
    return db, path, _start(path, db, tmp_path)


def _settled(db: Path) -> int:
    """Tuning trials that spent budget so far (completed or pruned)."""
    counts = _counts(db)
    return counts.get("completed", 0) + counts.get("pruned", 0)


def test_killed_driver_mid_tuning_resumes_without_exceeding_any_budget(tmp_path: Path) -> None:
    db, path, proc = _start_mlp_tuning(tmp_path, ["sgd", "adam"], trials_per_cell=5)
    try:
        _wait_for(lambda: _settled(db) >= 5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_session(proc)
    again = run_bench("run", str(path), "--db", str(db), "--num-cpus", "2", "--no-progress",
                      shared_ray=True)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    check_equal_budgets(f"sqlite:///{db}", "tuned", 5, n_cells=4)
