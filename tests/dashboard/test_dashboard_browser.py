"""The real thing: ``bench dashboard`` in a subprocess, pages in headless Chromium.

Each page must render without a Streamlit exception box or a Python traceback and show its
content; a PNG of each is saved under the test's temporary directory (printed at the end).
Hostile addresses and the access token are checked the same way, on a real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from bench_service.dashboard.screenshots import (
    PAGES,
    Chromium,
    capture_pages,
    dashboard_server,
    free_port,
)

pytestmark = pytest.mark.slow  # real dashboard servers: handed out first (tests/conftest.py)

EXPECTED = {
    "sweeps": "Sweeps", "convergence": "Convergence", "leaderboard": "Ranking per workload",
    "tuning": "Optimisation history", "analysis": "Which axis matters", "trial": "Curves",
}
TOKEN = "test-token-0123456789abcdef"


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


@pytest.mark.slow
def test_crafted_addresses_render_as_text(chromium: str, dash_db: str) -> None:
    """``?sweep=[x](http://evil)`` and ``?trial=![](http://t/p.png)`` are shown as text: no
    link to evil, no request for the tracking image; a huge trial id says "no such trial"."""
    link, image = "[x](http://evil)", "![](http://t/p.png)"
    with dashboard_server(dash_db) as base, Chromium(chromium) as browser:
        pages = {
            "sweep": browser.load(f"{base}/?{urllib.parse.urlencode({'sweep': link})}"),
            "trial": browser.load(
                f"{base}/trial?{urllib.parse.urlencode({'sweep': 'grid', 'trial': image})}"),
            "metric": browser.load(
                f"{base}/convergence?{urllib.parse.urlencode({'metric': image + link})}"),
            "huge": browser.load(f"{base}/trial?sweep=grid&trial={2**63}"),
        }
    for name, page in pages.items():
        assert page.ok, f"{name}: {page.text[:1000]}"
        assert 'href="http://evil' not in page.dom, name
        assert 'src="http://t/p.png' not in page.dom, name
    assert link in pages["sweep"].text
    assert image in pages["trial"].text
    assert "No such trial" in pages["huge"].text and "SELECT" not in pages["huge"].text


def _bench_dashboard(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench_service.cli", "dashboard", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_non_loopback_host_without_a_token_is_refused(dash_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DASHBOARD_TOKEN"}
    port = str(free_port())
    for host in ("0.0.0.0", "::"):
        proc = _bench_dashboard("--db", dash_db, "--host", host, "--port", port, env=env)
        assert proc.returncode == 2
        assert "token" in proc.stderr and "reverse proxy" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = _bench_dashboard("--db", dash_db, "--host", "0.0.0.0", "--port", port,
                            "--token", "short", env=env)
    assert proc.returncode == 2 and "at least 16 characters" in proc.stderr


@pytest.mark.slow
def test_token_guards_a_dashboard_bound_to_every_interface(
    chromium: str, dash_db: str, tmp_path: Path
) -> None:
    log = tmp_path / "dashboard.log"
    port = free_port()
    env = {**os.environ, "BENCH_DASHBOARD_TOKEN": TOKEN}
    with dashboard_server(dash_db, port, args=("--host", "0.0.0.0"), env=env, log=log) as base, \
            Chromium(chromium) as browser:
        locked = browser.load(f"{base}/leaderboard?sweep=grid")
        wrong = browser.load(f"{base}/?token=not-the-token-at-all")
        opened = browser.load(f"{base}/?token={TOKEN}&sweep=grid")
        address = str(browser.evaluate("location.href"))
        then = browser.load(f"{base}/leaderboard?sweep=grid")  # a new session: asks again
        printed = log.read_text()
    ours = next(line for line in printed.splitlines() if line.startswith("bench dashboard:"))
    assert f"http://0.0.0.0:{port}" in ours and "localhost" not in ours  # the real address
    assert TOKEN not in printed  # the token is not echoed into logs
    for page in (locked, wrong, then):
        assert page.ok and "needs its access token" in page.text
        assert "Ranking per workload" not in page.text and "grid" not in page.text
    assert "The token given was wrong" in wrong.text and "not-the-token" not in wrong.text
    assert opened.ok and "Sweeps" in opened.text and "grid" in opened.text
    assert "token" not in address  # dropped from the address once accepted
