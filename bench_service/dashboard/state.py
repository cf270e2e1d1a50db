"""Selections that survive page switches and live in the URL, so that views can be shared.

``?sweep=quickstart&metric=val_loss`` opens the Convergence page on that sweep and metric.
A widget's value is written back to ``st.query_params`` on every run, so the address bar
always describes what is on screen. A value from the URL is applied when it differs from
what the app last wrote there (a pasted link, a ``page_link`` from another page); an unknown
value gives a warning naming the valid ones and falls back to a default, never a traceback;
the value is echoed as inert text (``ui.literal``), so a crafted link cannot put a link or an
image into the page.

The sweep picker lives in the entry point (``app.py``) so that its widget, and with it the
chosen sweep, persists across pages; pages read it with ``context()``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from bench_service.dashboard import data, ui

T = TypeVar("T")

_CTX_KEY = "bench.context"
_WRITTEN = "bench.qp_written."
SWEEP_WIDGET = "bench.sweep"


@dataclass(frozen=True)
class Context:
    """What every page needs: the database, the sweeps and the chosen sweep.

    Attributes:
        url: The database URL (unmasked; use ``data.display_url`` to show it).
        sweeps: ``dashboard_queries.sweeps_frame`` (empty when nothing ran yet).
        sweep: The chosen sweep's row of ``sweeps`` as a dict, or ``None``.
        fingerprint: The chosen sweep's fingerprint (cache key of its data).
    """

    url: str
    sweeps: pd.DataFrame
    sweep: dict[str, Any] | None
    fingerprint: str

    @property
    def sweep_id(self) -> int:
        assert self.sweep is not None
        return int(self.sweep["sweep_id"])

    @property
    def sweep_name(self) -> str:
        assert self.sweep is not None
        return str(self.sweep["name"])


def closest(value: str, valid: Sequence[str], limit: int = 8) -> str:
    """```a`, `b`, ...``: the valid values, the closest to ``value`` first (for warnings),
    as inert Markdown (``ui.literal``)."""
    close = difflib.get_close_matches(value[:200], list(valid), n=3, cutoff=0.4)
    ordered = close + [v for v in valid if v not in close]
    shown = ", ".join(ui.literal(v) for v in ordered[:limit])
    return shown + (f", … ({len(valid)} in all)" if len(valid) > limit else "")


def synced_choice(
    label: str,
    options: Sequence[T],
    *,
    param: str,
    key: str,
    default: T | None = None,
    container: Any = None,
    widget: str = "selectbox",
    format_func: Callable[[T], str] = str,
    to_param: Callable[[T], str] = str,
    from_param: Callable[[str], T | None] | None = None,
    what: str | None = None,
    help: str | None = None,
    horizontal: bool = True,
) -> T:
    """A selectbox (or radio) whose value is mirrored in the query parameter ``param``.

    Args:
        options: The choices (non-empty).
        param: Query parameter name, e.g. ``metric``.
        key: Widget key (unique on the page).
        default: Choice when the URL names none (first option when ``None``).
        container: Where to draw it (``st.sidebar``, a column, ...); ``st`` by default.
        widget: ``selectbox`` or ``radio``.
        to_param, from_param: Convert between a choice and its URL text (``from_param``
            returns ``None`` for text naming no choice); ``str`` and lookup by default.
        what: Noun for the warning about an unknown value (``param`` by default).
    """
    if not options:
        raise ValueError(f"no options for {label!r}")
    ss = st.session_state
    container = container if container is not None else st
    options = list(options)
    lookup = {to_param(o): o for o in options}
    parse = from_param or lookup.get
    raw = st.query_params.get(param)
    if raw is not None and raw != ss.get(_WRITTEN + param):
        chosen = parse(raw)
        if chosen is not None and chosen in options:
            ss[key] = chosen
        else:
            shown = format_func(ss.get(key, default if default is not None else options[0]))
            st.warning(
                f"Unknown {what or param} {ui.literal(raw)} in the address; showing "
                f"{ui.literal(shown)} instead. Valid: {closest(raw, list(lookup))}."
            )
    if key not in ss or ss[key] not in options:
        ss[key] = default if default is not None and default in options else options[0]
    if widget == "radio":
        value = container.radio(
            label, options, key=key, format_func=format_func, help=help, horizontal=horizontal
        )
    else:
        value = container.selectbox(label, options, key=key, format_func=format_func, help=help)
    text = to_param(value)
    st.query_params[param] = text
    ss[_WRITTEN + param] = text
    return value


def mark_handled(param: str) -> None:
    """Treat the URL's current ``param`` as already applied (after a page reported it as
    invalid itself), so that ``synced_choice`` does not warn about it a second time."""
    raw = st.query_params.get(param)
    if raw is not None:
        st.session_state[_WRITTEN + param] = raw


def from_url(param: str) -> str | None:
    """The URL's ``param`` if it is new (not what the app itself wrote last), else ``None``."""
    raw = st.query_params.get(param)
    return raw if raw is not None and raw != st.session_state.get(_WRITTEN + param) else None


def setup(url: str) -> Context:
    """Open the database, pick the sweep (sidebar) and remember both for the pages.

    Stops the script with an error message (not a traceback) when the database cannot be
    opened.
    """
    problem = data.open_error(url)
    if problem is not None:
        st.error(f"Cannot open the results database {data.display_url(url)}: {problem}")
        st.stop()
    ready = data.schema_ready(url)
    sweeps = data.sweeps(url) if ready else _no_sweeps()
    if ready:
        have, head = data.schema_revision(url)
        if have != head:
            st.warning(
                f"This database's schema is at revision {have}, older than this bench's "
                f"({head}); newer details (e.g. tuning summaries) are not shown. "
                f"`bench db upgrade --db {data.display_url(url)}` brings it up to date.",
                icon=":material/update:")
    sweep: dict[str, Any] | None = None
    fp = ""
    if not sweeps.empty:
        names = sweeps["name"].tolist()
        newest = names[-1]
        name = synced_choice(
            "Sweep", names, param="sweep", key=SWEEP_WIDGET, default=newest,
            container=st.sidebar, what="sweep",
            help="All pages show this sweep; the choice is kept in the address (?sweep=...).",
        )
        sweep = sweeps[sweeps["name"] == name].iloc[0].to_dict()
        fp = data.fingerprint(url, int(sweep["sweep_id"]))
    st.sidebar.caption(f"Database: `{data.display_url(url)}`")
    ctx = Context(url=url, sweeps=sweeps, sweep=sweep, fingerprint=fp)
    st.session_state[_CTX_KEY] = ctx
    return ctx


def _no_sweeps() -> pd.DataFrame:
    return pd.DataFrame({"sweep_id": [], "name": [], "status": []})


def context() -> Context:
    """The context ``setup`` stored for this run (pages run after the entry point)."""
    ctx = st.session_state.get(_CTX_KEY)
    if not isinstance(ctx, Context):  # a page run on its own (e.g. ``streamlit run page.py``)
        ctx = setup(data.db_url())
    return ctx
