"""Sweeps page: every sweep with its status, progress, start time and duration.

While any sweep runs, the table and the chosen sweep's status chart re-run on their own
every few seconds (``st.fragment(run_every=...)``), re-reading only the cheap status query;
nothing is polled once every sweep has finished.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from bench_service.dashboard import charts, data, labels, state, ui
from bench_service.vocab import TRIAL_ENDED, TRIAL_STATUSES

#: Seconds between refreshes while a sweep runs.
REFRESH_S = 5
#: Statuses that count as "done" in the progress bar (the attempt ended), in lifecycle order.
DONE = tuple(s for s in TRIAL_STATUSES if s in TRIAL_ENDED)


def overview(sweeps: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """The table shown: progress as a fraction, duration in seconds, counts per status."""
    total = sweeps["n_trials"].clip(lower=1)
    done = sweeps[list(DONE)].sum(axis=1)
    end = sweeps["finished_at"].where(sweeps["status"] != "running", pd.Timestamp(now))
    end = end.fillna(sweeps["last_activity"])
    duration = (end - sweeps["started_at"]).dt.total_seconds()
    return pd.DataFrame({
        "sweep": sweeps["name"],
        "status": sweeps["status"],
        "progress": (done / total).clip(upper=1.0),
        "trials": sweeps["n_trials"],
        **{s: sweeps[s] for s in TRIAL_STATUSES},
        "started": sweeps["started_at"],
        "duration": [labels.duration(s) for s in duration],
        "description": sweeps["description"].fillna(""),
    })


def render_table(ctx: state.Context) -> None:
    sweeps = data.sweeps(ctx.url)
    table = overview(sweeps, datetime.now(timezone.utc))
    st.dataframe(
        table, hide_index=True, key="sweeps_table",
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", help="finished trials (completed, diverged, failed, pruned, "
                "cancelled) / all trials", format="percent", min_value=0.0, max_value=1.0),
            "started": st.column_config.DatetimeColumn("started (UTC)",
                                                       format="YYYY-MM-DD HH:mm:ss"),
            "duration": st.column_config.TextColumn("duration", help="until finished, or "
                                                    "until now while running"),
        },
    )
    ui.table_download(table, key="sweeps", filename="sweeps", label="Download table (CSV)")
    fig = charts.status_figure(sweeps, TRIAL_STATUSES)
    ui.chart(fig, sweeps[["name", *TRIAL_STATUSES]], key="sweep_status",
             filename="sweep_status", caption="Trials per status, per sweep.")
    running = sweeps["status"].eq("running").any()
    if running:
        st.caption(f":blue[●] a sweep is running: refreshing every {REFRESH_S} s "
                   f"(last {datetime.now(timezone.utc):%H:%M:%S} UTC)")


def render_selected(ctx: state.Context) -> None:
    assert ctx.sweep is not None
    name = ctx.sweep_name
    st.subheader(f"Sweep {name}")
    trials = data.trials(ctx.url, ctx.sweep_id, data.fingerprint(ctx.url, ctx.sweep_id))
    row = ctx.sweep
    cols = st.columns(6)
    cols[0].markdown(f"**status**  \n{ui.status_badge(str(row['status']))}")
    for col, status in zip(cols[1:], ("completed", "running", "diverged", "failed", "pruned"),
                           strict=True):
        col.metric(status, int((trials["status"] == status).sum()) if not trials.empty else 0)
    if not trials.empty:
        fig = charts.cell_status_figure(trials, TRIAL_STATUSES)
        per_cell = trials.groupby(["workload", "optimizer", "status"]).size().reset_index(
            name="trials")
        ui.chart(fig, per_cell, key="cell_status", filename=f"{name}_status_by_cell",
                 caption="Where trials diverged or failed, by workload and optimizer.")
    links = st.columns(4)
    for col, (page, title) in zip(links, (("views/convergence.py", "Convergence"),
                                          ("views/leaderboard.py", "Leaderboard"),
                                          ("views/tuning.py", "Tuning"),
                                          ("views/trial.py", "Trial")), strict=True):
        col.page_link(page, label=f"{title} of {name}", query_params={"sweep": name},
                      icon=":material/arrow_forward:")
    with st.expander("Spec"):
        st.json(data.spec(ctx.url, name, ctx.fingerprint), expanded=False)


def main() -> None:
    ctx = state.context()
    st.title("Sweeps")
    if ctx.sweeps.empty:
        ui.no_sweeps(data.display_url(ctx.url))
        return
    live = bool(ctx.sweeps["status"].eq("running").any())
    auto = st.toggle("Auto-refresh while a sweep runs", value=True, key="sweeps_auto",
                     disabled=not live)

    @st.fragment(run_every=REFRESH_S if (live and auto) else None)
    def live_view() -> None:
        render_table(ctx)
        # A sweep that just finished (or started) changes what the rest of the page shows.
        if bool(data.sweeps(ctx.url)["status"].eq("running").any()) != live:
            st.rerun()

    live_view()
    if ctx.sweep is not None:
        render_selected(ctx)


main()
