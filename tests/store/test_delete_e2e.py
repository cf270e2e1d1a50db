"""A deleted tuned sweep, run again under its name, gets its whole tuning budget: real ``bench
run`` processes on real Ray, on both backends (the Optuna studies live in the same database)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _helpers import run_bench

from bench_service.store import Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

optuna = pytest.importorskip("optuna")

BUDGET = 2
SPEC = {
    "name": "again", "workloads": ["quadratic"], "optimizers": ["sgd"],
    "schedulers": ["constant"], "budget": {"epochs": 1},
    "tuning": {"trials_per_cell": BUDGET, "sampler": "random", "pruner": "none",
               "final_seeds": [0]},
}


def _run(spec: Path, url: str) -> None:
    proc = run_bench("run", str(spec), "--db", url, "--num-cpus", "1", "--no-progress",
                     timeout=600, shared_ray=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _tuning_trials(url: str) -> tuple[int, int]:
    """(tuning trials stored by bench, trials in the cell's Optuna study)."""
    with Store.open_existing(url) as store:
        tuning = store.trials_frame("again", role="tuning")
        (study_name,) = store.cells_frame("again")["study_name"]
    study = optuna.load_study(study_name=study_name, storage=url)
    return len(tuning), len(study.trials)


# SQLite only end to end; deleting cells and studies on PostgreSQL is test_optuna_tables'.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_recreated_tuned_sweep_starts_with_its_full_budget(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (f"sqlite:///{tmp_path / 'bench.db'}" if backend == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    spec = tmp_path / "again.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    _run(spec, url)
    assert _tuning_trials(url) == (BUDGET, BUDGET)

    with Store(url) as store:
        assert store.delete_sweep("again") is True
    assert optuna.get_all_study_names(url) == []

    _run(spec, url)  # before the fix: the old study was loaded, its budget already spent
    assert _tuning_trials(url) == (BUDGET, BUDGET)
