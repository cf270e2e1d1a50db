"""The Analysis page under Streamlit's AppTest: it shows the same numbers as ``bench
analyze``, follows its widgets, and says what it cannot do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _apptest import chart_data, figures, no_exception, open_page
from _synthetic import grid_trials, store_sweep, tuned_trials

from bench_service.analysis import analyze
from bench_service.store import Store

PLANTED = {"opt_effect": {"sgd": 0.5, "momentum": 0.2}, "sched_effect": {"cosine": -0.2},
           "interaction": {("sgd", "cosine"): 0.15}}


@pytest.fixture(scope="module")
def analysis_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('andb') / 'bench.db'}"
    store_sweep(url, grid_trials(**PLANTED), "grid")
    store_sweep(url, tuned_trials(), "tuned", spec={
        "name": "tuned", "tuning": {"objective": {"metric": "val_loss", "mode": "min"}}})
    return url


def test_page_shows_the_analysis_of_bench_analyze(
    make_app: Callable[..., Any], analysis_db: str
) -> None:
    at = open_page(make_app(analysis_db, sweep="grid"), "analysis")
    no_exception(at)
    text = " ".join(m.value for m in at.markdown)
    assert "the optimizer explains" in text
    with Store(analysis_db) as store:
        expected = analyze(store.trials_frame("grid"), sweep="grid")
    assert expected.summary[1] in text
    shown = chart_data(at, "an_iqm")
    iqm = shown[shown["metric"] == "IQM"].set_index("cell")["estimate"]
    ref = expected.aggregates[expected.aggregates["metric"] == "IQM"].set_index("cell")[
        "estimate"]
    assert iqm.to_dict() == pytest.approx(ref.to_dict())
    keys = set(at.session_state["bench.chart_data"])
    assert {"an_effects", "an_interaction", "an_iqm", "an_poi", "an_cd", "an_algoperf"} <= keys
    assert len(figures(at)) >= 6


def test_choosing_one_workload_drops_the_cross_workload_model(
    make_app: Callable[..., Any], analysis_db: str
) -> None:
    at = open_page(make_app(analysis_db, sweep="grid"), "analysis")
    at.selectbox(key="an_workload").set_value("w1").run()
    no_exception(at)
    notes = " ".join(m.value for m in at.markdown)
    assert "single workload: no cross-workload model" in notes
    assert set(chart_data(at, "an_effects")["workload"]) == {"w1"}


def test_a_tuned_sweep_shows_budget_curves(make_app: Callable[..., Any], analysis_db: str
                                            ) -> None:
    at = open_page(make_app(analysis_db, sweep="tuned"), "analysis")
    no_exception(at)
    curves = chart_data(at, "an_budget")
    assert set(curves["k"]) == set(range(1, 7))
    assert "an_lr" in at.session_state["bench.chart_data"]


def test_an_empty_database_shows_the_empty_state(make_app: Callable[..., Any], tmp_path: Path
                                                 ) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    at = open_page(make_app(url), "analysis")
    no_exception(at)
    assert any("No sweeps yet" in i.value for i in at.info)
