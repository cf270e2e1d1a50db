"""Helpers for driving the dashboard with ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np


def open_page(at: Any, page: str) -> Any:
    """Run the app once (entry point), then switch to ``views/<page>.py`` and run it."""
    if not getattr(at, "_bench_started", False):
        at.run()
        at._bench_started = True
    at.switch_page(f"views/{page}.py")
    return at.run()


def chart_data(at: Any, key: str) -> Any:
    """The frame behind chart ``key`` on the last run (recorded by ``dashboard.ui.chart``)."""
    return at.session_state["bench.chart_data"][key]


def figures(at: Any) -> list[dict[str, Any]]:
    """The Plotly figures of the last run, as JSON (what the browser receives)."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def no_exception(at: Any) -> None:
    assert not at.exception, [e.message for e in at.exception]


def plotly_values(array: Any) -> list[float]:
    """A Plotly JSON data array as a list (Plotly ≥ 6 sends numbers base64 ``bdata``)."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)
