"""Trial page: everything about one run, its config, where it ran, how it ended, its curves.

Open a trial by id with ``?trial=123`` (the sweep follows the trial), or pick one of the
chosen sweep's trials. A failed trial shows its error, a diverged one the step at which it
blew up (also marked on its curves); all its points download as one CSV.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from bench_service.dashboard import charts, data, labels, state, ui
from bench_service.store import dashboard_queries as q


def _trial_label(row: pd.Series) -> str:
    return (f"#{row['trial_id']}  {row['workload']} / {row['optimizer']} / {row['scheduler']} / "
            f"{row['regularizer']}  seed {row['seed']}  · {row['status']}"
            + (f" · {row['role']} {row['number']}" if row["role"] == "tuning" else ""))


def parse_trial_id(raw: str) -> int | None:
    """A trial id from the address (ASCII digits, in the id column's range), else ``None``.

    ``str.isdigit`` and ``int`` accept more (``²``, ``+1``, ``1_0``, 10⁴⁰⁰⁰ digits), and an id
    beyond the column's range makes the database raise, with the SQL in the message.
    """
    if not re.fullmatch(r"[0-9]{1,19}", raw):
        return None
    value = int(raw)
    return value if 1 <= value <= q.MAX_ID else None


def _resolve_url_trial(ctx: state.Context) -> None:
    """Apply ``?trial=`` from the address: report a bad id, follow a trial of another sweep."""
    raw = state.from_url("trial")
    if raw is None:
        return
    trial_id = parse_trial_id(raw)
    if trial_id is None and not re.fullmatch(r"[0-9]+", raw):
        st.error(f"Trial {ui.literal(raw)} in the address is not a trial id (a number such "
                 "as `?trial=12`); pick a trial below.")
        state.mark_handled("trial")
        return
    info = data.trial(ctx.url, trial_id) if trial_id is not None else None
    if info is None:
        st.error(f"No such trial: there is no trial {ui.literal(raw)} in this database; "
                 "pick a trial below.")
        state.mark_handled("trial")
        return
    if ctx.sweep is None or info["sweep_id"] != ctx.sweep_id:
        st.query_params["sweep"] = str(info["sweep"])
        st.rerun()


def main() -> None:
    ctx = state.context()
    st.title("Trial")
    _resolve_url_trial(ctx)
    ui.stop_without_sweep(ctx)
    url, sid, fp = ctx.url, ctx.sweep_id, ctx.fingerprint
    trials = data.trials(url, sid, fp)
    if trials.empty:
        st.info(f"Sweep **{ctx.sweep_name}** has no trials.")
        return
    rows = {int(r["trial_id"]): r for _, r in trials.iterrows()}
    ids = list(rows)
    started = [i for i in ids if rows[i]["status"] != "pending"]
    trial_id = state.synced_choice(
        "Trial", ids, param="trial", key="trial_pick", default=(started or ids)[0],
        format_func=lambda i: _trial_label(rows[i]), to_param=str,
        from_param=parse_trial_id, what="trial",
    )
    info = data.trial(url, trial_id)
    if info is None:
        st.error(f"Trial #{trial_id} vanished from the database (its sweep was deleted?).")
        return

    get = info.get
    st.subheader(f"{get('workload')} / {get('optimizer')} / {get('scheduler')} / "
                 f"{get('regularizer')}, seed {get('seed')}")
    st.markdown(f"{ui.status_badge(str(get('status')))}  role **{get('role')}**"
                + (f" (tuning trial {get('number')})" if get("number") is not None else "")
                + f" · attempt {get('attempt')} · sweep **{ctx.sweep_name}**")
    cols = st.columns(6)
    cols[0].metric("steps", get("steps") if get("steps") is not None else "–")
    cols[1].metric("epochs", get("epochs") if get("epochs") is not None else "–")
    cols[2].metric("wall time", labels.duration(get("wall_time")) or "–")
    cols[3].metric("examples / s", f"{get('examples_per_sec'):,.0f}"
                   if get("examples_per_sec") else "–")
    cols[4].metric("host", get("host") or "–")
    cols[5].metric("device", get("device") or "–")
    if get("status") == "diverged":
        st.warning(f"Diverged at step {get('diverged_step')}: the training loss became "
                   "non-finite or exceeded the divergence bound (marked ✕ on the curves).",
                   icon=":material/warning:")
    if get("error"):
        st.error("This trial failed:", icon=":material/error:")
        st.code(str(get("error")), language="text")
    if get("step_to_target") is not None:
        st.caption(f"Reached its target at step {get('step_to_target')} "
                   f"({labels.duration(get('time_to_target'))}).")

    final, best = get("final") or {}, get("best") or {}
    left, right = st.columns(2)
    with left:
        st.markdown("**Final and best metrics**")
        names = sorted(set(final) | set(best))
        st.dataframe(pd.DataFrame({
            "metric": names,
            "final": [final.get(n) for n in names],
            "best": [best.get(n) for n in names],
        }), hide_index=True, key="trial_summary")
        st.markdown("**Hyperparameters**")
        st.json(get("params") or {}, expanded=2)
    with right:
        st.markdown("**Config**")
        st.json(get("config") or {}, expanded=2)
        with st.expander("Versions, times and identity"):
            st.json(json.loads(json.dumps({
                k: get(k) for k in ("versions", "created_at", "started_at", "finished_at",
                                    "heartbeat_at", "trial_hash", "cell_key", "objective")
                if k in info}, default=str)))

    st.subheader("Curves")
    points = data.trial_points(url, trial_id, f"{get('status')}|{get('heartbeat_at')}")
    if points.empty:
        st.info("This trial has not recorded any metric yet.")
        return
    c1, c2 = st.columns([3, 1])
    x = c1.radio("x axis", list(labels.X_AXES), format_func=labels.X_AXES.__getitem__,
                 horizontal=True, key="trial_x")
    log_y = c2.toggle("Log y (losses)", value=False, key="trial_log")
    keys = sorted({(str(n), str(s)) for n, s in zip(points["name"], points["scope"],
                                                    strict=True)},
                  key=lambda k: (k[0] == "lr", k[0], k[1]))
    names_by_key = {k: labels.metric_option(*k).split("  ·  ")[0] for k in keys}
    fig = charts.trial_figure(points, x=x, x_label=labels.X_AXES[x], labels=names_by_key,
                              diverged_step=get("diverged_step"), log_y=log_y)
    ui.chart(fig, points, key="trial_curves", filename=f"trial_{trial_id}_points",
             caption=f"All {len(points)} points of trial #{trial_id} (the CSV is the full "
             "record, non-finite values included).")


main()
