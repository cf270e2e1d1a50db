"""The results store: sweeps, trials and metric points in SQL (SQLite or PostgreSQL).

Imports only ``bench_service.engine.records``/``config``/``errors`` from the engine (no
torch), so the CLI, the API and the dashboard can read results without the training stack.

Typical use::

    store = Store("results.db")            # or a URL, or $BENCH_DB_URL (creates/migrates)
    reader = Store.open_existing("results.db")  # read paths: never creates, never migrates
    sweep = store.create_sweep("adam-vs-sgd", spec, spec_hash, new_trials)
    attempt = store.start_trial(trial_id, host="node1", device="cuda:0", versions={...})
    store.append_metrics(trial_id, points)
    store.finish_trial(trial_id, result)   # a TrialResult or its summary dict
    frame = store.trials_frame("adam-vs-sgd", optimizer=["adam", "sgd"])
"""

from __future__ import annotations

from bench_service.store._frames import CURVES_FRAME_COLUMNS, TRIALS_FRAME_COLUMNS
from bench_service.store.db import make_engine, mask_url, resolve_url
from bench_service.store.entities import (
    ROLES,
    SCOPES,
    SWEEP_STATUSES,
    TRIAL_STATUSES,
    NewTrial,
    SweepInfo,
    TrialInfo,
)
from bench_service.store.errors import (
    DatabaseLockedError,
    DatabaseUnavailableError,
    NoDatabaseError,
    ReadOnlyDatabaseError,
    SchemaVersionError,
    StoreError,
    SweepExistsError,
)
from bench_service.store.migrate import current_revision, upgrade
from bench_service.store.optuna_tables import check_optuna_schema
from bench_service.store.store import Store

__all__ = [
    "CURVES_FRAME_COLUMNS",
    "ROLES",
    "SCOPES",
    "SWEEP_STATUSES",
    "TRIALS_FRAME_COLUMNS",
    "TRIAL_STATUSES",
    "DatabaseLockedError",
    "DatabaseUnavailableError",
    "NewTrial",
    "NoDatabaseError",
    "ReadOnlyDatabaseError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "SweepExistsError",
    "SweepInfo",
    "TrialInfo",
    "check_optuna_schema",
    "current_revision",
    "make_engine",
    "mask_url",
    "resolve_url",
    "upgrade",
]
