"""The report in headless Chromium: it renders offline, draws its figures, raises no script
error and fetches nothing; a screenshot is kept under the test's temporary directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _synthetic import grid_trials, tuned_trials

from bench_service.analysis import analyze
from bench_service.analysis.report import environment, write_report

_STATE = """JSON.stringify({
  ready: document.readyState,
  errors: window.benchErrors ? window.benchErrors : null,
  divs: document.querySelectorAll('.plotly-graph-div').length,
  drawn: document.querySelectorAll('.plotly-graph-div .main-svg').length,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  text: document.body ? document.body.innerText : ''
})"""


@pytest.fixture(scope="module")
def chromium() -> str:
    from bench_service.dashboard.screenshots import find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    pytest.importorskip("websockets.sync.client", reason="Chromium is driven with websockets")
    return binary


@pytest.mark.parametrize("kind", ["grid", "tuned"])
def test_report_renders_offline_without_script_errors(
    chromium: str, tmp_path: Path, kind: str
) -> None:
    from bench_service.dashboard.screenshots import Chromium

    trials = grid_trials(opt_effect={"sgd": 0.5}, sched_effect={"cosine": -0.2}) \
        if kind == "grid" else tuned_trials()
    result = analyze(trials, sweep=kind)
    out = tmp_path / "report.html"
    write_report(result, {"name": kind}, environment(trials), out)
    with Chromium(chromium, width=1300, height=900) as browser:
        browser.call("Page.navigate", url=out.resolve().as_uri())
        deadline = time.monotonic() + 60
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            raw = browser.evaluate(_STATE)
            state = json.loads(raw) if isinstance(raw, str) else {}
            divs, drawn = int(state.get("divs") or 0), int(state.get("drawn") or 0)
            if state.get("ready") == "complete" and divs and drawn >= divs:
                break
            time.sleep(0.2)
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    assert state.get("errors") == [], state.get("errors")
    assert state["ready"] == "complete" and divs and drawn >= divs, state
    assert state["resources"] == [], state["resources"]  # nothing fetched: opens offline
    assert "Summary" in str(state["text"]) and "Environment" in str(state["text"])
    png = tmp_path / f"report_{kind}.png"
    import base64

    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    print(f"\nscreenshot: {png}")
