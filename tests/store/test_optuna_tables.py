"""Optuna's tables next to ours: a deleted sweep takes its studies along (so a sweep
re-created under its name gets its full tuning budget), and an Optuna schema this Optuna cannot
use is refused before anything is written. Real Optuna studies on both backends."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _store_helpers import new_trial
from sqlalchemy import inspect, text

from bench_service.store import SchemaVersionError, Store, check_optuna_schema
from bench_service.store.db import make_engine, writer

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(logging.WARNING)

BUDGET = 3


def _tune(url: str, study_name: str, n: int = BUDGET) -> int:
    """Run ``n`` trials of a real study (with params, values, intermediate values, attrs)."""

    def objective(trial: Any) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        trial.report(x * x, step=0)
        trial.set_user_attr("bench_trial_id", trial.number)
        return x * x

    study = optuna.create_study(storage=url, study_name=study_name, load_if_exists=True)
    study.set_user_attr("sweep", study_name.split("/")[0])
    study.optimize(objective, n_trials=n)
    return len(study.trials)


def _budget_left(url: str, study_name: str) -> int:
    """What the tuner does on (re)start: load the study by name and count its trials."""
    study = optuna.create_study(storage=url, study_name=study_name, load_if_exists=True)
    return BUDGET - len(study.trials)


def _tuned_sweep(store: Store, name: str) -> list[str]:
    """A tuned sweep with two cells, each with a spent study recorded in ``bench_cells``."""
    sweep = store.create_sweep(name, {"name": name}, "0" * 64, [new_trial(0)])
    studies = [f"{name}/quadratic-sgd", f"{name}/quadratic-adam"]
    for i, study_name in enumerate(studies):
        assert _tune(store.url, study_name) == BUDGET
        store.upsert_cell(
            sweep.id, f"cell{i}", label=study_name.split("/")[1], workload="quadratic",
            optimizer=study_name.rsplit("-", 1)[1], scheduler="constant", regularizer="none",
            study_name=study_name, objective_metric="val_loss", objective_mode="min",
            n_tuning=BUDGET,
        )
    return studies


def _optuna_rows(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = [t for t in inspect(conn).get_table_names() if not t.startswith("bench_")
                     and t not in ("alembic_version", "version_info")]
            return {t: int(conn.scalar(text(f"SELECT COUNT(*) FROM {t}")) or 0) for t in names}
    finally:
        engine.dispose()


def test_delete_sweep_deletes_its_cells_and_studies(store: Store) -> None:
    studies = _tuned_sweep(store, "tuned")
    _tune(store.url, "tuned-2/quadratic-sgd")  # a sweep whose name starts like ours
    _tune(store.url, "untracked")
    _tune(store.url, "tuned/orphan")  # ours by the tuner's naming, though in no cell row
    baseline = _optuna_rows(store.url)

    assert store.delete_sweep("tuned") is True
    assert store.cells_frame().empty
    assert sorted(optuna.get_all_study_names(store.url)) == ["tuned-2/quadratic-sgd",
                                                             "untracked"]
    after = _optuna_rows(store.url)
    # every study-owned row went with its study: 3 of 5 studies gone, rows in proportion
    assert after["studies"] == 2 and after["trials"] == 2 * BUDGET
    for table in ("trial_params", "trial_values", "trial_intermediate_values",
                  "trial_user_attributes", "study_user_attributes"):
        assert after[table] * 5 == baseline[table] * 2, table

    # re-created under its name: the full budget again, not the old study's trials
    store.create_sweep("tuned", {"name": "tuned"}, "0" * 64, [new_trial(0)])
    for study_name in studies:
        assert _budget_left(store.url, study_name) == BUDGET


def test_delete_sweep_without_optuna_tables_creates_none(store: Store) -> None:
    store.create_sweep("grid", {"name": "grid"}, "0" * 64, [new_trial(0)])
    assert store.delete_sweep("grid") is True
    assert _optuna_rows(store.url) == {}


def test_check_optuna_schema_passes_fresh_and_current_databases(db_url: str) -> None:
    check_optuna_schema(db_url)  # no tables at all: nothing created
    engine = make_engine(db_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    _tune(db_url, "s/cell")
    check_optuna_schema(db_url)


def test_a_future_optuna_schema_is_refused_and_left_alone(db_url: str) -> None:
    _tune(db_url, "s/cell")
    engine = make_engine(db_url)
    with writer(engine).begin() as conn:  # as a newer Optuna would have left its tables
        conn.execute(text("UPDATE alembic_version SET version_num = 'v99.0.0.a'"))
        conn.execute(text("UPDATE version_info SET schema_version = 99, "
                          "library_version = '99.0.0'"))
    with pytest.raises(SchemaVersionError) as info:
        check_optuna_schema(db_url)
    message = str(info.value)
    assert "'v99.0.0.a'" in message and optuna.__version__ in message
    assert "pip install -U optuna" in message and "\n" not in message
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "v99.0.0.a"
    engine.dispose()
