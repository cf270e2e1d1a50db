"""Every page of the dashboard, driven by ``streamlit.testing.v1.AppTest`` on real sweeps.

Widgets must change what is plotted (checked on the data behind each chart and on the
Plotly figure itself), and bad addresses must produce a message, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _apptest import chart_data, figures, no_exception, open_page, plotly_values

from bench_service.dashboard.palette import color_of
from bench_service.dashboard.smoothing import ema

PAGES = ["sweeps", "convergence", "leaderboard", "tuning", "analysis", "trial"]
MakeApp = Callable[..., Any]


def texts(elements: Any) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.mark.parametrize("sweep", ["grid", "tuned", "live"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(make_app: MakeApp, dash_db: str, page: str, sweep: str) -> None:
    at = open_page(make_app(dash_db, sweep=sweep), page)
    no_exception(at)
    assert not at.error and not at.warning
    assert at.title[0].value == page.capitalize()
    assert at.query_params["sweep"] == sweep


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_says_what_to_run(make_app: MakeApp, empty_db: str, page: str) -> None:
    at = open_page(make_app(empty_db), page)
    no_exception(at)
    assert "bench run examples/quickstart.yaml" in texts(at.info)


def test_unreachable_database_is_an_error_message(make_app: MakeApp) -> None:
    at = make_app("postgresql+psycopg://nobody@127.0.0.1:1/nothing").run()
    no_exception(at)
    assert "Cannot open the results database" in texts(at.error)
    assert "***" not in texts(at.error) or "nobody" in texts(at.error)


def test_unknown_sweep_warns_and_falls_back(make_app: MakeApp, dash_db: str) -> None:
    at = make_app(dash_db, sweep="gird").run()
    no_exception(at)
    message = texts(at.warning)
    assert "Unknown sweep `gird`" in message  # echoed as inert code, not as Markdown
    assert message.index("`grid`") < message.index("`tuned`")  # the closest name first
    assert at.query_params["sweep"] == "live"  # the newest sweep, written back to the URL
    at = open_page(at, "convergence")
    no_exception(at)
    assert not at.warning and at.get("plotly_chart")


def test_unknown_metric_warns(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", metric="val_los"), "convergence")
    no_exception(at)
    assert "Unknown metric `val_los`" in texts(at.warning)
    assert at.query_params["metric"] == "val_loss"  # the default took over
    assert set(chart_data(at, "convergence")["series"]) >= {"val_loss"}


@pytest.mark.parametrize("bad", ["abc", "999999"])
def test_unknown_trial_is_an_error(make_app: MakeApp, dash_db: str, bad: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", trial=bad), "trial")
    no_exception(at)
    assert "trial" in texts(at.error).lower()
    assert not at.warning  # reported once, as an error


def test_trial_link_follows_its_sweep(make_app: MakeApp, dash_db: str) -> None:
    from bench_service.store import Store

    store = Store(dash_db, upgrade=False)
    tuned_id = int(store.trials_frame("tuned")["trial_id"].iloc[0])
    store.close()
    at = open_page(make_app(dash_db, sweep="grid", trial=str(tuned_id)), "trial")
    no_exception(at)
    assert at.query_params["sweep"] == "tuned"
    assert at.selectbox(key="trial_pick").value == tuned_id


def test_query_params_select_metric_axis_and_grouping(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", metric="train_loss@step", x="epoch",
                            group="scheduler", facet="none"), "convergence")
    no_exception(at)
    assert at.selectbox(key="conv_metric").value == ("train_loss", "step")
    data = chart_data(at, "convergence")
    main = data[data["series"] == "train_loss"]
    assert set(main["line"]) == {"constant", "cosine"} and set(main["facet"]) == {""}
    assert main["x"].max() <= 2  # epochs 0..2


def test_grouping_facets_and_metric_change_the_data(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid"), "convergence")
    data = chart_data(at, "convergence")
    main = data[data["series"] == "val_loss"]
    assert set(main["line"]) == {"sgd", "adam", "momentum"}
    assert set(main["facet"]) == {"linreg", "mlp_digits"}

    at.selectbox(key="conv_group").set_value("scheduler").run()
    main = chart_data(at, "convergence").query("series == 'val_loss'")
    assert set(main["line"]) == {"constant", "cosine"}
    assert at.query_params["group"] == "scheduler"

    at.selectbox(key="conv_group").set_value("cell").run()
    main = chart_data(at, "convergence").query("series == 'val_loss'")
    assert "adam / cosine / none" in set(main["line"])  # workload is the facet

    at.selectbox(key="conv_facet").set_value("none").run()
    main = chart_data(at, "convergence").query("series == 'val_loss'")
    assert set(main["facet"]) == {""}
    assert "adam / cosine / none / linreg" in set(main["line"])

    at.selectbox(key="conv_metric").set_value(("val_accuracy", "epoch")).run()
    no_exception(at)
    data = chart_data(at, "convergence")
    assert "val_accuracy" in set(data["series"]) and "val_loss" not in set(data["series"])
    acc = data[data["series"] == "val_accuracy"]["y"].dropna()
    assert ((acc >= 0) & (acc <= 1)).all()
    assert at.query_params["metric"] == "val_accuracy"


def test_smoothing_applies_the_bias_corrected_ema(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", metric="train_loss@step"), "convergence")
    raw = chart_data(at, "convergence").query("series == 'train_loss'")
    assert np.allclose(raw["y"], raw["raw_mean"], equal_nan=True)
    at.slider(key="conv_smooth").set_value(0.8).run()
    no_exception(at)
    smooth = chart_data(at, "convergence").query("series == 'train_loss'")
    for (_facet, _line), g in smooth.groupby(["facet", "line"]):
        g = g.sort_values("x")
        np.testing.assert_allclose(g["y"], ema(g["raw_mean"].to_numpy(), 0.8), rtol=1e-9)
    assert not np.allclose(smooth["y"], smooth["raw_mean"], equal_nan=True)


def test_band_log_scale_and_individual_runs(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid"), "convergence")
    minmax = chart_data(at, "convergence").query("series == 'val_loss'")
    assert (minmax["lo"] <= minmax["y"] + 1e-12).all()
    at.radio(key="conv_band").set_value("std").run()
    std = chart_data(at, "convergence").query("series == 'val_loss'")
    assert not np.allclose(std["lo"], minmax["lo"], equal_nan=True)
    np.testing.assert_allclose(std["hi"] - std["y"], std["y"] - std["lo"], atol=1e-12)

    fig = figures(at)[0]
    assert fig["layout"]["yaxis"]["type"] == "log"  # losses start on a log axis
    at.toggle(key="conv_log").set_value(False).run()
    assert figures(at)[0]["layout"]["yaxis"]["type"] == "linear"

    at.radio(key="conv_mode").set_value("runs").run()
    no_exception(at)
    runs = chart_data(at, "convergence").query("series == 'val_loss'")
    assert runs["trial_id"].nunique() == 24  # the diverged run never reached a val_loss


def test_filters_and_x_axis(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid"), "convergence")
    at.multiselect(key="conv_filter_optimizer").set_value(["adam"]).run()
    main = chart_data(at, "convergence").query("series == 'val_loss'")
    assert set(main["line"]) == {"adam"}
    steps = main["x"].max()
    at.radio(key="conv_x").set_value("wall_time").run()
    wall = chart_data(at, "convergence").query("series == 'val_loss'")
    assert wall["x"].max() < steps  # seconds, not steps
    assert at.query_params["x"] == "wall_time"


def test_diverged_run_is_marked_where_it_blew_up(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", metric="train_loss@step"), "convergence")
    no_exception(at)
    data = chart_data(at, "convergence")
    marks = data[data["series"] == "diverged"]
    assert len(marks) == 1 and marks["facet"].iloc[0] == "linreg"
    fig = figures(at)[0]
    traces = [t for t in fig["data"] if t.get("name") == "diverged here"]
    assert traces and traces[0]["marker"]["symbol"] == "x"
    assert plotly_values(traces[0]["x"]) == [pytest.approx(float(marks["x"].iloc[0]))]
    diverged_step = int(at.dataframe[0].value["diverged_step"].iloc[0])
    assert float(marks["x"].iloc[0]) == diverged_step  # at the step where it blew up


def test_lr_strip_under_the_loss(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", group="scheduler"), "convergence")
    lr = chart_data(at, "convergence").query("series == 'lr'")
    cosine = lr[(lr["line"] == "cosine") & (lr["facet"] == "mlp_digits")]
    for _trial, run in cosine.groupby("trial_id"):  # every run's own schedule
        run = run.sort_values("x")
        assert run["y"].is_monotonic_decreasing and run["y"].iloc[0] > run["y"].iloc[-1]
    constant = lr[(lr["line"] == "constant") & (lr["facet"] == "mlp_digits")]
    assert (constant.groupby("trial_id")["y"].nunique() == 1).all()
    names = [t.get("name", "") for t in figures(at)[0]["data"]]
    assert any(n.endswith(" lr") for n in names)
    at.toggle(key="conv_lr").set_value(False).run()
    assert "lr" not in set(chart_data(at, "convergence")["series"])


def test_same_colour_for_an_optimizer_on_every_page(make_app: MakeApp, dash_db: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid"), "convergence")
    conv = {t["name"]: t["line"]["color"] for t in figures(at)[0]["data"]
            if t.get("name") in {"sgd", "adam", "momentum"} and t.get("mode") == "lines"}
    at = open_page(at, "leaderboard")
    ranking = {t["name"]: t["marker"]["color"] for t in figures(at)[0]["data"]
               if t.get("name") in {"sgd", "adam", "momentum"}}
    assert conv == ranking == {o: color_of("optimizer", o) for o in ("sgd", "adam", "momentum")}
    assert len(set(conv.values())) == 3


def test_leaderboard_statistics_and_objective(make_app: MakeApp, dash_db: str) -> None:
    from bench_service.store import Store
    from bench_service.sweep.stats import summarize

    at = open_page(make_app(dash_db, sweep="grid"), "leaderboard")
    no_exception(at)
    board = chart_data(at, "ranking")
    store = Store(dash_db, upgrade=False)
    trials = store.trials_frame("grid", workload="mlp_digits", optimizer="adam",
                                scheduler="cosine")
    store.close()
    s = summarize(trials["final_val_loss"].tolist(), method="bootstrap")
    row = board[(board["workload"] == "mlp_digits") & (board["cell"] == "adam/cosine/none")]
    assert row["mean"].iloc[0] == pytest.approx(s.mean)
    assert (row["ci_low"].iloc[0], row["ci_high"].iloc[0]) == (pytest.approx(s.ci_low),
                                                              pytest.approx(s.ci_high))
    # The diverging SGD (lr 50) is its own cell, ranked last, named by what differs.
    prof = chart_data(at, "profile")
    assert prof["fraction"].between(0, 1).all()
    at_one = prof[prof["tau"] == prof["tau"].min()]  # τ = 1: only each workload's best cell
    assert at_one["fraction"].sum() == pytest.approx(1.0)  # 2 workloads × 1/2
    linreg = board[board["workload"] == "linreg"]
    worst = linreg.sort_values("rank").iloc[-1]
    assert worst["cell"] == "sgd/constant/none [optimizer.lr=50]" and worst["diverged"] == 1

    at.selectbox(key="lb_objective").set_value("final:val_accuracy").run()
    no_exception(at)
    acc = chart_data(at, "ranking")
    assert at.radio(key="lb_mode_final:val_accuracy").value == "max"
    best = acc[acc["workload"] == "mlp_digits"].sort_values("rank").iloc[0]
    assert best["mean"] == acc[acc["workload"] == "mlp_digits"]["mean"].max()

    heat = chart_data(at, "heatmap")
    assert set(heat["workload"]) == {"linreg"}
    at.selectbox(key="lb_workload").set_value("mlp_digits").run()
    assert set(chart_data(at, "heatmap")["workload"]) == {"mlp_digits"}
    # val_accuracy exists on mlp_digits only: the profile has one workload to go by.
    prof = chart_data(at, "profile")
    assert prof[prof["tau"] == prof["tau"].min()]["fraction"].sum() == pytest.approx(0.5)


def test_tuning_page(make_app: MakeApp, db_copy: str) -> None:
    at = open_page(make_app(db_copy, sweep="tuned"), "tuning")
    no_exception(at)
    history = chart_data(at, "history")
    assert set(history["number"]) == set(range(5)) and len(history) == 10
    for _cell, g in history.groupby("cell"):
        assert (g.sort_values("number")["best_so_far"].diff().dropna() <= 1e-12).all()
    sens = chart_data(at, "sensitivity")
    assert "param:optimizer.lr" in sens.columns
    fig = [f for f in figures(at) if "log" in str(f["layout"].get("xaxis", {}).get("type"))]
    assert fig, "learning rates are drawn on a log axis"
    assert "not available" in texts(at.info)

    # Once the tuner stores importances, the page shows them.
    from bench_service.store import Store

    store = Store(db_copy, upgrade=False)
    sweep = store.get_sweep("tuned")
    assert sweep is not None
    for key, optimizer in history.drop_duplicates("cell_key")[["cell_key", "optimizer"]].values:
        store.upsert_cell(sweep.id, key, label=f"linreg/{optimizer}/constant/none",
                          workload="linreg", optimizer=optimizer, scheduler="constant",
                          regularizer="none", study_name=key, objective_metric="val_loss",
                          objective_mode="min", n_tuning=4, importance={"optimizer.lr": 1.0})
    # 5 tuning rows per cell, but the tuner counted 4 (one lost in a crash and run again):
    # the budget's count is the tuner's, in `bench results --best` and on the page.
    from bench_service.sweep.best import best_table

    best = best_table(store, "tuned")
    assert (best["tuning_trials"] == 4).all()
    store.close()
    at.run()  # the sweep's fingerprint has not changed, but the cache key's TTL is short
    if "importance" not in at.session_state["bench.chart_data"]:
        from bench_service.dashboard import data

        data.importance.clear()
        data.cells.clear()
        at.run()
    no_exception(at)
    assert set(chart_data(at, "importance")["param"]) == {"optimizer.lr"}
    summary = next(d.value for d in at.dataframe if "n_pruned" in d.value.columns)
    assert (summary["trials"] == 4).all()


def test_trial_page_shows_divergence_and_downloads(make_app: MakeApp, dash_db: str) -> None:
    from bench_service.store import Store

    store = Store(dash_db, upgrade=False)
    diverged = store.trials_frame("grid", status="diverged").iloc[0]
    store.close()
    at = open_page(make_app(dash_db, sweep="grid", trial=str(diverged["trial_id"])), "trial")
    no_exception(at)
    assert f"Diverged at step {diverged['diverged_step']}" in texts(at.warning)
    points = chart_data(at, "trial_curves")
    assert np.isinf(points["value"]).any() or points["value"].max() > 1e3
    assert {"train_loss", "lr"} <= set(points["name"])
    labels = [b.label for b in at.get("download_button")]
    assert labels, "a CSV download is offered"
    at.radio(key="trial_x").set_value("wall_time").run()
    no_exception(at)


def test_sweeps_page_progress_and_live_refresh(make_app: MakeApp, dash_db: str) -> None:
    at = make_app(dash_db, sweep="live").run()
    no_exception(at)
    table = at.dataframe[0].value
    live = table[table["sweep"] == "live"].iloc[0]
    assert live["progress"] == pytest.approx(0.25) and live["status"] == "running"
    assert "refreshing every" in texts(at.caption)
    status = chart_data(at, "sweep_status")
    assert isinstance(status, pd.DataFrame) and set(status["name"]) == {"grid", "tuned", "live"}
    assert at.toggle(key="sweeps_auto").value is True


# ----------------------------------------------------------------------- issue 10 / 16 fixes


def _lr_runs(db: str, sweep: str) -> pd.DataFrame:
    """Every run's stored LR curve (epoch scope), straight from the database."""
    from bench_service.store import Store
    from bench_service.store import dashboard_queries as q

    store = Store(db, upgrade=False)
    try:
        sweep_id = store.get_sweep(sweep).id  # type: ignore[union-attr]
        return q.run_curves(store, sweep_id, name="lr", scope="epoch", x="step")
    finally:
        store.close()


def test_lr_strip_draws_each_runs_schedule_not_a_mean(make_app: MakeApp, dash_db: str) -> None:
    """Grouped by optimizer, SGD's strip holds constant and cosine runs (and the lr-50 one):
    every curve drawn is one a run followed, each distinct one is drawn, none is a mean."""
    at = open_page(make_app(dash_db, sweep="grid", group="optimizer", x="step"), "convergence")
    no_exception(at)
    lr = chart_data(at, "convergence").query("series == 'lr'")
    stored = _lr_runs(dash_db, "grid")

    def curve(frame: pd.DataFrame) -> tuple[tuple[float, float], ...]:
        frame = frame.sort_values("x")
        return tuple(zip(frame["x"].round(6), frame["y" if "y" in frame else "value"].round(12),
                         strict=True))

    for facet in ("linreg", "mlp_digits"):
        real = {curve(g) for _t, g in stored[(stored["workload"] == facet)
                                             & (stored["optimizer"] == "sgd")].groupby("trial_id")}
        drawn = {curve(g) for _t, g in lr[(lr["facet"] == facet)
                                          & (lr["line"] == "sgd")].groupby("trial_id")}
        assert drawn == real  # each distinct schedule once, nothing else
        assert len(real) >= 2  # constant and cosine: a mean would be a third, unused curve
    runs = lr.drop_duplicates("trial_id")
    assert runs["runs"].sum() == stored["trial_id"].nunique()  # shared curves are counted
    fig = figures(at)[0]
    strip = [k for k, v in fig["layout"].items() if k.startswith("yaxis")
             and "learning rate" in str(v.get("title", {}).get("text", ""))]
    axis = fig["layout"][strip[0]]
    values = lr["y"][lr["y"] > 0]
    assert axis["type"] == "log"
    assert axis["range"][0] < np.log10(values.min()) and np.log10(values.max()) < axis["range"][1]


def test_trial_page_draws_a_constant_lr_where_it_is(make_app: MakeApp, dash_db: str) -> None:
    from bench_service.store import Store

    store = Store(dash_db, upgrade=False)
    trials = store.trials_frame("grid", optimizer="adam", scheduler="constant")
    store.close()
    at = open_page(make_app(dash_db, sweep="grid", trial=str(trials["trial_id"].iloc[0])),
                   "trial")
    no_exception(at)
    points = chart_data(at, "trial_curves")
    lr = points[points["name"] == "lr"]["value"]
    assert lr.nunique() == 1
    fig = figures(at)[0]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    panel = next(i for i, t in enumerate(titles) if t.startswith("learning rate"))
    axis = fig["layout"]["yaxis" if panel == 0 else f"yaxis{panel + 1}"]
    # A log axis around the value (not Plotly's ±1 around a constant, which reads as 0).
    assert axis["type"] == "log"
    assert axis["range"][0] < np.log10(lr.iloc[0]) < axis["range"][1]
    assert axis["range"][1] - axis["range"][0] < 1.0


HOSTILE = ["[x](http://evil)", "![](http://t/p.png)", "`x` ![](http://t/p.png)", "a" * 5000]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(("param", "page"), [("sweep", "sweeps"), ("metric", "convergence"),
                                             ("trial", "trial"), ("objective", "leaderboard")])
def test_url_values_are_echoed_as_inert_text(
    make_app: MakeApp, dash_db: str, value: str, param: str, page: str
) -> None:
    params = {"sweep": "grid", param: value}
    # The sweep picker reports on the entry point's first run (the default page, Sweeps).
    at = make_app(dash_db, **params).run() if page == "sweeps" else \
        open_page(make_app(dash_db, **params), page)
    no_exception(at)
    shown = texts(at.warning) + texts(at.error)
    assert shown, "the bad value is reported"
    for body in [*(w.value for w in at.warning), *(e.value for e in at.error)]:
        # Outside code spans, no Markdown link or image syntax survives.
        outside = "".join(part for i, part in enumerate(_split_code(body)) if i % 2 == 0)
        assert "](" not in outside and "![" not in outside, body
        assert len(body) < 1500  # a bounded slice of the input, not 5,000 characters


def _split_code(markdown: str) -> list[str]:
    """Split Markdown into [text, code, text, code, ...] by CommonMark code spans."""
    import re

    parts, pos = [], 0
    for m in re.finditer(r"(`+)(.*?[^`])\1(?!`)", markdown, flags=re.S):
        parts += [markdown[pos:m.start()], m.group(2)]
        pos = m.end()
    return [*parts, markdown[pos:]]


@pytest.mark.parametrize("bad", [str(2**31), str(2**63), "9" * 40, "²", "+5", "1_0", "-3"])
def test_out_of_range_trial_ids_say_no_such_trial(make_app: MakeApp, dash_db: str,
                                                  bad: str) -> None:
    at = open_page(make_app(dash_db, sweep="grid", trial=bad), "trial")
    no_exception(at)
    message = texts(at.error)
    assert "no such trial" in message.lower() or "not a trial id" in message.lower()
    assert "SELECT" not in message and "Traceback" not in message


@pytest.fixture(scope="module")
def labels_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    from _sweep_db import build_all

    return build_all(f"sqlite:///{tmp_path_factory.mktemp('labels') / 'labels.db'}",
                     ("labels",))


def test_two_configurations_of_one_workload_are_ranked_apart(
    make_app: MakeApp, labels_db: str
) -> None:
    """``quadratic`` and ``quadratic(condition=10)``: two rankings, by the ``workload``
    column's label, in ``bench results --best`` and on the Leaderboard."""
    from bench_service.store import Store
    from bench_service.sweep.best import best_table

    labels = {"quadratic", "quadratic(condition=10)"}
    store = Store(labels_db, upgrade=False)
    try:
        best = best_table(store, "labels")
    finally:
        store.close()
    assert set(best["workload"]) == labels
    for _label, g in best.groupby("workload"):
        assert sorted(g["rank"]) == [1, 2] and set(g["optimizer"]) == {"sgd", "adam"}
        assert (g["n"] == 2).all() and (g["n_seeds"] == 2).all()
    assert ((best["ci95_low"] >= 0) & (best["ci95_low"] <= best["mean"])).all()

    at = open_page(make_app(labels_db, sweep="labels"), "leaderboard")
    no_exception(at)
    board = chart_data(at, "ranking")
    assert set(board["workload"]) == labels
    for label, g in board.groupby("workload"):
        assert sorted(g["rank"]) == [1, 2], label
        same = best[best["workload"] == label].set_index("cell_key")
        for row in g.itertuples():
            assert row.mean == pytest.approx(same.loc[row.cell_key, "mean"])
            assert row.ci_low == pytest.approx(same.loc[row.cell_key, "ci95_low"])
    titles = {a["text"] for a in figures(at)[0]["layout"]["annotations"]}
    assert labels <= titles  # one panel per configuration, labelled readably
    assert {t.label for t in at.tabs} >= labels


def test_cis_stay_within_the_metric_range(make_app: MakeApp, dash_db: str) -> None:
    """Two seeds: a Student-t interval of a loss goes below zero; the leaderboard's never
    leaves the seeds' range, and its ``n`` says how many values it rests on."""
    at = open_page(make_app(dash_db, sweep="grid"), "leaderboard")
    no_exception(at)
    board = chart_data(at, "ranking")
    ranked = board[board["n"] >= 2]
    assert not ranked.empty
    assert (ranked["ci_low"] >= 0).all()
    from bench_service.store import Store

    store = Store(dash_db, upgrade=False)
    trials = store.trials_frame("grid")
    store.close()
    for row in ranked.itertuples():
        values = trials[trials["cell_key"] == row.cell_key]["final_val_loss"].dropna()
        assert values.min() - 1e-12 <= row.ci_low <= row.mean <= row.ci_high \
            <= values.max() + 1e-12
    assert "n" in at.dataframe[0].value.columns


def test_token_is_asked_once_per_session_and_dropped_from_the_address(
    make_app: MakeApp, dash_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "app-test-token-0123456789"
    monkeypatch.setenv("BENCH_DASHBOARD_TOKEN", token)
    locked = make_app(dash_db, sweep="grid").run()
    no_exception(locked)
    assert "needs its access token" in texts(locked.error)
    assert not locked.get("plotly_chart") and not locked.sidebar.selectbox  # nothing shown
    wrong = make_app(dash_db, token="wrong-token-wrong-token").run()
    assert "was wrong" in texts(wrong.error) and "wrong-token" not in texts(wrong.error)
    at = make_app(dash_db, sweep="grid", token=token).run()
    no_exception(at)
    assert not at.error and "token" not in at.query_params
    at = open_page(at, "leaderboard")  # the session stays open without the token
    no_exception(at)
    assert not at.error and at.get("plotly_chart")
