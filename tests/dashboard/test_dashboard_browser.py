"""The real thing: ``bench dashboard`` in a subprocess, every page in headless Chromium.

Each page must render without a Streamlit exception box or a Python traceback and show its
content; a PNG of each is saved under the test's temporary directory (printed at the end).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_service.dashboard.screenshots import PAGES, capture_pages, dashboard_server

EXPECTED = {
    "sweeps": "Sweeps", "convergence": "Convergence", "leaderboard": "Ranking per workload",
    "tuning": "Optimisation history", "trial": "Curves",
}


@pytest.mark.slow
def test_pages_render_in_chromium(chromium: str, dash_db: str, tmp_path: Path) -> None:
    out = tmp_path / "screenshots"
    with dashboard_server(dash_db) as base:
        results = capture_pages(base, out, sweep="tuned")
    assert [r.screenshot for r in results] == [out / f"{stem}.png" for stem, _ in PAGES]
    for (stem, _), result in zip(PAGES, results, strict=True):
        assert result.ok, f"{stem}: exception box or traceback in\n{result.text[:2000]}"
        assert "stException" not in result.dom and "Traceback" not in result.dom
        assert EXPECTED[stem] in result.text, f"{stem} did not render:\n{result.text[:1000]}"
        assert result.screenshot is not None and result.screenshot.stat().st_size > 20_000
        with result.screenshot.open("rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert results[1].plots >= 1 and results[2].plots >= 3  # charts were drawn
    print(f"\nscreenshots: {out}")
