"""Results as pandas DataFrames: the Python face of ``bench results``.

    >>> from bench_service import load_trials, load_curves
    >>> trials = load_trials("quickstart")                      # one row per trial
    >>> curves = load_curves("quickstart", names=["val_loss"])  # long format
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def load_trials(sweep: str | None = None, db: str | None = None, **filters: Any) -> pd.DataFrame:
    """One row per trial (axes, seed, status, final/best metrics, hyperparameters).

    Args:
        sweep: Sweep name; ``None`` for every sweep.
        db: Database URL or SQLite file; default ``$BENCH_DB_URL`` or ``./bench.db``.
        **filters: ``workload``, ``optimizer``, ``scheduler``, ``regularizer``, ``status``,
            ``role``, ``seed``: a value or a list of values.
    """
    from bench_service.store import Store

    store = Store(db)
    try:
        return store.trials_frame(sweep, **filters)
    finally:
        store.close()


def load_curves(
    sweep: str | None = None, db: str | None = None, *, names: list[str] | None = None,
    scope: str | None = None, trial_ids: list[int] | None = None, **filters: Any,
) -> pd.DataFrame:
    """Metric points in long format: trial_id, axes, seed, name, scope, step, epoch,
    wall_time, value. ``names`` selects metrics, ``scope`` 'step' or 'epoch'."""
    from bench_service.store import Store

    store = Store(db)
    try:
        return store.curves_frame(sweep, names=names, scope=scope, trial_ids=trial_ids,
                                  **filters)
    finally:
        store.close()
