"""Where the dashboard's data comes from: the database URL, the store and cached queries.

Every read goes through ``bench_service.store.dashboard_queries`` (SQLAlchemy Core, bound
parameters) and is cached with ``st.cache_data``. Cache keys hold the database URL, the
sweep and the query's parameters, plus the sweep's *fingerprint* (its status counts and
newest heartbeat, re-read every few seconds): a finished sweep is therefore read once and
then served from memory, while a running sweep's pages see new points within seconds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from bench_service.store import Store, StoreError, mask_url, resolve_url
from bench_service.store import dashboard_queries as q
from bench_service.store.db import ENV_VAR  # the database's variable, set by bench dashboard

#: Seconds the sweep list and fingerprints are reused: how live a running sweep looks.
SHORT_TTL = 3
#: Seconds results keyed by a fingerprint are kept (new data changes the key anyway).
LONG_TTL = 900
#: Filters in a hashable form: ``(("optimizer", ("adam", "sgd")), ...)``.
FilterKey = tuple[tuple[str, tuple[Any, ...]], ...]


def db_url() -> str:
    """The database to show: ``--db URL`` after ``--`` on the Streamlit command line, else
    ``$BENCH_DB_URL`` (what ``bench dashboard`` sets), else ``./bench.db``.

    ``bench dashboard`` passes the URL in the environment rather than on the command line,
    where a PostgreSQL password would be visible to every user of the machine (``ps``).
    """
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return resolve_url(argv[i + 1])
        if arg.startswith("--db="):
            return resolve_url(arg.split("=", 1)[1])
    return resolve_url(os.environ.get(ENV_VAR) or None)


def display_url(url: str) -> str:
    """The URL with its password masked, for captions."""
    return mask_url(url)


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    # Read-only use: never migrate someone's results database from a dashboard.
    return Store(url, upgrade=False)


def store(url: str) -> Store:
    """The (process-wide, pooled) store for ``url``.

    Raises:
        StoreError: The database cannot be opened.
    """
    return _store(url)


def open_error(url: str) -> str | None:
    """Why ``url`` cannot be shown, or ``None`` when it can (tables may still be missing)."""
    try:
        store(url)
    except StoreError as exc:
        return str(exc)
    return None


def filter_key(filters: Mapping[str, Sequence[Any] | None]) -> FilterKey:
    """Filters in the hashable, order-independent form the cached queries take."""
    return tuple(
        (name, tuple(sorted(values, key=str)))
        for name, values in sorted(filters.items())
        if values is not None
    )


def _axis_filters(key: FilterKey) -> q.AxisFilters:
    return q.AxisFilters(**{name: list(values) for name, values in key})


@st.cache_data(ttl=SHORT_TTL, show_spinner=False)
def schema_ready(url: str) -> bool:
    return q.schema_ready(store(url))


@st.cache_data(ttl=SHORT_TTL, show_spinner=False)
def sweeps(url: str) -> pd.DataFrame:
    """All sweeps with their status counts (see ``dashboard_queries.sweeps_frame``)."""
    return q.sweeps_frame(store(url))


@st.cache_data(ttl=SHORT_TTL, show_spinner=False)
def fingerprint(url: str, sweep_id: int) -> str:
    return q.sweep_fingerprint(store(url), sweep_id)


@st.cache_data(ttl=LONG_TTL, max_entries=64, show_spinner=False)
def catalog(url: str, sweep_id: int, fp: str) -> pd.DataFrame:
    """Metrics of the sweep (``fp``: the sweep's fingerprint, part of the cache key)."""
    return q.metric_catalog(store(url), sweep_id)


@st.cache_data(ttl=LONG_TTL, max_entries=64, show_spinner=False)
def trials(url: str, sweep_id: int, fp: str) -> pd.DataFrame:
    """One row per trial with its final/best metrics and hyperparameters."""
    return q.trial_summaries(store(url), sweep_id)


@st.cache_data(ttl=LONG_TTL, max_entries=128, show_spinner=False)
def bands_and_lr(
    url: str,
    sweep_id: int,
    fp: str,
    *,
    metric: dict[str, Any] | None,
    lr: dict[str, Any] | None,
    x: str,
    group_by: tuple[str, ...],
    filters: FilterKey,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """A metric's bands and, when asked, every run's learning rate, queried at once.

    ``metric``/``lr`` hold ``name, scope, max_points, x_max, points_per_run``. The learning
    rate is read per run (``run_curves``: ``trial_id, bucket, x, value``; the caller joins
    the trials' columns), not averaged: the mean of two schedules is a
    schedule no run used. The two reads are independent scans, so they run on two
    connections in parallel (SQLite in WAL mode and PostgreSQL both serve concurrent
    readers), which is what keeps the Convergence page of a 1,000-run sweep under 2 s.
    """
    from concurrent.futures import ThreadPoolExecutor

    def bands(spec: dict[str, Any]) -> pd.DataFrame:
        return q.curve_bands(store(url), sweep_id, x=x, group_by=group_by,
                             filters=_axis_filters(filters), **spec)

    def per_run(spec: dict[str, Any]) -> pd.DataFrame:
        return q.run_curves(store(url), sweep_id, x=x, filters=_axis_filters(filters),
                            axes=False, **spec)

    if lr is None:
        return (bands(metric) if metric is not None else None), None
    if metric is None:
        return None, per_run(lr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        main = pool.submit(bands, metric)
        lr_frame = pool.submit(per_run, lr)
        return main.result(), lr_frame.result()


@st.cache_data(ttl=LONG_TTL, max_entries=64, show_spinner=False)
def runs(
    url: str,
    sweep_id: int,
    fp: str,
    *,
    name: str,
    scope: str,
    x: str,
    filters: FilterKey,
    trial_ids: tuple[int, ...],
    max_points: int,
    x_max: float | None,
    points_per_run: int | None,
) -> pd.DataFrame:
    """One downsampled curve per run."""
    return q.run_curves(
        store(url), sweep_id, name=name, scope=scope, x=x, filters=_axis_filters(filters),
        trial_ids=list(trial_ids), max_points=max_points, x_max=x_max,
        points_per_run=points_per_run,
    )


@st.cache_data(ttl=LONG_TTL, max_entries=64, show_spinner=False)
def divergence(
    url: str, sweep_id: int, fp: str, *, name: str, scope: str, filters: FilterKey
) -> pd.DataFrame:
    """Where each diverged run (matching ``filters``) blew up, on metric ``name``."""
    return q.divergence_points(
        store(url), sweep_id, name=name, scope=scope, filters=_axis_filters(filters)
    )


@st.cache_data(ttl=LONG_TTL, max_entries=16, show_spinner=False)
def cells(url: str, sweep_id: int, fp: str) -> pd.DataFrame | None:
    """The tuner's per-cell summary (``bench_cells``), ``None`` on databases without it."""
    return q.tuned_cells(store(url), sweep_id)


@st.cache_data(ttl=LONG_TTL, max_entries=16, show_spinner=False)
def importance(url: str, sweep_id: int, fp: str) -> pd.DataFrame | None:
    """Parameter importance per tuned cell, ``None`` until the tuner stores it."""
    return q.cell_importance(store(url), sweep_id)


@st.cache_data(ttl=SHORT_TTL, max_entries=64, show_spinner=False)
def trial(url: str, trial_id: int) -> dict[str, Any] | None:
    """One trial's row (``dashboard_queries.trial_detail``), or ``None`` if there is none."""
    return q.trial_detail(store(url), trial_id)


@st.cache_data(ttl=LONG_TTL, show_spinner=False)
def schema_revision(url: str) -> tuple[str | None, str]:
    """(the database's schema revision, the newest one this bench knows)."""
    return q.schema_revision(store(url))


@st.cache_data(ttl=SHORT_TTL, max_entries=64, show_spinner=False)
def trial_points(url: str, trial_id: int, heartbeat: str) -> pd.DataFrame:
    """Every metric point of one trial (``heartbeat`` keys the cache on new points)."""
    return q.trial_points(store(url), trial_id)


@st.cache_data(ttl=LONG_TTL, max_entries=32, show_spinner=False)
def spec(url: str, name: str, fp: str) -> dict[str, Any]:
    """The sweep's spec as stored (empty if the sweep vanished meanwhile)."""
    info = store(url).get_sweep(name)
    return dict(info.spec) if info is not None else {}


@st.cache_data(ttl=LONG_TTL, max_entries=32, show_spinner=False)
def leaderboard(url: str, sweep_id: int, fp: str, objective: str, mode: str) -> pd.DataFrame:
    """``analysis.leaderboard`` of the sweep's ranked trials (cached: 0.2 s per 1,000)."""
    from bench_service.dashboard import analysis

    ranked, _ = analysis.ranked_trials(trials(url, sweep_id, fp))
    return analysis.leaderboard(ranked, objective, mode,
                                curves=_objective_curves(url, sweep_id, objective))


def _objective_curves(url: str, sweep_id: int, objective: str) -> pd.DataFrame | None:
    """The objective's epoch points against wall time, for the equal wall-clock rank."""
    which, _, name = objective.partition(":")
    if which != "final" or not name:
        return None
    try:
        frame = q.run_curves(store(url), sweep_id, name=name, scope="epoch", x="wall_time",
                             max_points=2000, axes=False)
    except ValueError:  # a metric name the curve query does not accept
        return None
    return frame.rename(columns={"x": "wall_time"})[["trial_id", "wall_time", "value"]]


@st.cache_data(ttl=LONG_TTL, max_entries=16, show_spinner=False)
def time_to_target(url: str, sweep_id: int, fp: str) -> pd.DataFrame:
    """``analysis.time_to_target`` of the sweep's ranked trials (cached)."""
    from bench_service.dashboard import analysis

    ranked, _ = analysis.ranked_trials(trials(url, sweep_id, fp))
    return analysis.time_to_target(ranked)


@st.cache_data(ttl=LONG_TTL, max_entries=16, show_spinner=False)
def analysis_result(url: str, sweep_id: int, fp: str, sweep: str, objective: str | None,
                    workload: str | None) -> Any:
    """``bench_service.analysis.analyze`` of the sweep (cached per fingerprint: the same
    numbers as ``bench analyze``)."""
    from bench_service.analysis import analyze

    return analyze(trials(url, sweep_id, fp), sweep=sweep, spec=spec(url, sweep, fp),
                   objective=objective, workload=workload)
