"""Small Streamlit building blocks shared by the pages (charts with downloads, empty states).

Every chart goes through ``chart``: it draws the figure, offers the data behind it as CSV
and records that data in ``st.session_state["bench.chart_data"][key]``, which is how the
tests check that a widget changed what is plotted without parsing the figure.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

CHART_DATA = "bench.chart_data"
_PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


#: Characters of a URL value echoed in a message, at most.
ECHO_LIMIT = 60


def literal(value: object, limit: int = ECHO_LIMIT) -> str:
    """``value`` as inert Markdown text: a code span, so that a crafted address
    (``?sweep=[x](http://evil)``, ``![](http://t/p.png)``) shows as text, never as a link or
    an image; cut to ``limit`` characters. The fence is longer than any run of backticks
    inside, and control characters (newlines) become spaces, so nothing can close it early.
    """
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    if len(text) > limit:
        text = text[:limit] + "…"
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def reset_chart_data() -> None:
    """Forget the previous run's chart data (called once per run by the entry point)."""
    st.session_state[CHART_DATA] = {}


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "data"


def chart(
    fig: go.Figure, data: pd.DataFrame, *, key: str, filename: str, caption: str | None = None
) -> None:
    """Draw ``fig`` with a CSV download of ``data`` (the numbers behind it)."""
    st.plotly_chart(fig, key=f"chart.{key}", config=_PLOTLY_CONFIG)
    cols = st.columns([1, 4])
    cols[0].download_button(
        "Download data (CSV)",
        lambda: data.to_csv(index=False).encode(),  # built on click, not on every rerun
        file_name=f"{slug(filename)}.csv",
        mime="text/csv",
        key=f"download.{key}",
        on_click="ignore",
        icon=":material/download:",
    )
    if caption:
        cols[1].caption(caption)
    st.session_state.setdefault(CHART_DATA, {})[key] = data


def table_download(data: pd.DataFrame, *, key: str, filename: str, label: str) -> None:
    """A CSV download for a table shown with ``st.dataframe``."""
    st.download_button(
        label,
        lambda: data.to_csv(index=False).encode(),
        file_name=f"{slug(filename)}.csv",
        mime="text/csv",
        key=f"download.{key}",
        on_click="ignore",
        icon=":material/download:",
    )


def no_sweeps(url_display: str) -> None:
    """The empty state: what to run to get something to look at."""
    st.info(
        "**No sweeps yet**: run `bench run examples/quickstart.yaml` "
        f"(with `--db` pointing at `{url_display}`), then reload this page.",
        icon=":material/info:",
    )


def stop_without_sweep(ctx: Any) -> None:
    """Show the empty state and end the page when there is no sweep to show."""
    if ctx.sweep is None:
        from bench_service.dashboard import data

        no_sweeps(data.display_url(ctx.url))
        st.stop()


#: Badge colour of each trial/sweep status (``vocab.TRIAL_STATUSES``, ``SWEEP_STATUSES``).
BADGE_COLORS: dict[str, str] = {
    "completed": "green", "running": "blue", "pending": "gray", "diverged": "red",
    "failed": "red", "pruned": "gray", "cancelled": "orange",
}


def status_badge(status: str) -> str:
    """Markdown badge for a trial or sweep status (an unknown one is shown as plain text)."""
    if status not in BADGE_COLORS:
        return literal(status)
    return f":{BADGE_COLORS[status]}-badge[{status}]"
