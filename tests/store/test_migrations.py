"""Migrations: an empty database reaches head, repeats are no-ops, Optuna's schema coexists."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from _store_helpers import new_trial, run_processes, upgrade_worker
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from bench_service.store import Store, current_revision, upgrade
from bench_service.store.db import make_engine, writer
from bench_service.store.migrate import alembic_config, head_revision
from bench_service.store.models import VERSION_TABLE, Base

OURS = {"bench_sweeps", "bench_trials", "bench_metrics", "bench_cells", "bench_sweep_leases",
        VERSION_TABLE}
OPTUNA = {"studies", "trials", "trial_params", "trial_values", "version_info", "alembic_version"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    try:
        yield e
    finally:
        e.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _schema_diff(engine: Engine) -> list[object]:
    """Differences between the migrated database and ``models.py`` (ours only)."""

    def ours(name: str | None, type_: str, parent: object) -> bool:
        return type_ != "table" or str(name).startswith("bench_")

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_name": ours, "version_table": VERSION_TABLE},
        )
        return list(compare_metadata(context, Base.metadata))


def _create_optuna_study(url: str, name: str) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(storage=url, study_name=name)
    study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=2)


def test_upgrade_creates_the_bench_schema(db_url: str, engine: Engine) -> None:
    assert current_revision(db_url) is None
    assert upgrade(db_url) == head_revision()
    assert current_revision(db_url) == head_revision()
    assert _tables(engine) == OURS  # nothing without the bench_ prefix
    assert _schema_diff(engine) == []


def test_upgrade_twice_is_a_no_op(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    with Store(db_url) as store:
        store.create_sweep("kept", {}, "a" * 64, [new_trial(0)])
    assert upgrade(db_url) == head_revision()
    with Store(db_url) as store:
        assert store.get_sweep("kept") is not None
    with engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert [v for (v,) in versions] == [head_revision()]


def test_downgrade_to_base_and_back(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    with writer(engine).begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert _tables(engine) <= {VERSION_TABLE}
    upgrade(db_url)
    assert _tables(engine) == OURS


def test_optuna_study_coexists_after_our_upgrade(db_url: str, engine: Engine) -> None:
    upgrade(db_url)
    _create_optuna_study(db_url, "tuning")
    tables = _tables(engine)
    assert tables >= OURS | OPTUNA

    assert upgrade(db_url) == head_revision()
    with Store(db_url) as store:
        store.create_sweep("s", {}, "a" * 64, [new_trial(0)])
    assert _schema_diff(engine) == []  # Optuna's tables are not ours to migrate
    import optuna

    study = optuna.load_study(study_name="tuning", storage=db_url)
    assert len(study.trials) == 2


def test_our_upgrade_works_on_an_optuna_database(db_url: str, engine: Engine) -> None:
    _create_optuna_study(db_url, "first")
    with engine.connect() as conn:
        optuna_version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    with Store(db_url) as store:
        sweep = store.create_sweep("s", {}, "a" * 64, [new_trial(0)])
        assert store.trials_to_run(sweep.id)[0].trial_hash == new_trial(0).trial_hash
    assert _tables(engine) >= OURS | OPTUNA
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            optuna_version
        )
    _create_optuna_study(db_url, "second")  # and Optuna still works afterwards


def test_concurrent_upgrades_from_two_processes(db_url: str, engine: Engine) -> None:
    run_processes(upgrade_worker, [(db_url,), (db_url,), (db_url,)])
    assert current_revision(db_url) == head_revision()
    assert _tables(engine) == OURS


def test_upgrade_from_0001_keeps_the_data_and_adds_tuning(db_url: str, engine: Engine) -> None:
    """A database written by the first release (revision 0001) upgrades in place."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0001")
        conn.execute(text(
            "INSERT INTO bench_sweeps (name, spec, spec_hash, status, n_trials, created_at) "
            "VALUES ('old', '{}', :h, 'completed', 1, CURRENT_TIMESTAMP)"), {"h": "b" * 64})
        sweep_id = conn.execute(text("SELECT id FROM bench_sweeps")).scalar_one()
        conn.execute(text(
            "INSERT INTO bench_trials (sweep_id, trial_hash, cell_key, workload, optimizer, "
            "scheduler, regularizer, seed, role, config, params, status, attempt, created_at) "
            "VALUES (:s, :h, :h, 'linreg', 'sgd', 'constant', 'none', 0, 'grid', '{}', '{}', "
            "'completed', 1, CURRENT_TIMESTAMP)"), {"s": sweep_id, "h": "c" * 64})
    assert current_revision(db_url) == "0001"
    assert upgrade(db_url) == head_revision()
    assert "bench_cells" in _tables(engine)
    with Store(db_url) as store:
        frame = store.trials_frame("old")
        assert len(frame) == 1 and frame["objective"].isna().all()
    assert _schema_diff(engine) == []
