"""Load dashboard pages in headless Chromium, check they rendered, and save screenshots.

Used by the browser test (``tests/dashboard``) and to make the README's screenshots::

    python -m bench_service.dashboard.screenshots --db bench.db --sweep quickstart \
        --out docs/screenshots

Streamlit pages are filled in over a websocket after the HTML loads, so a plain
``chromium --screenshot`` catches an empty page. Chromium is therefore driven through the
DevTools protocol: navigate, wait until the script has finished running and the charts have
been drawn, read the DOM (a Streamlit exception box is ``[data-testid="stException"]``), then
capture the whole page. Needs Debian's ``chromium`` and the ``websockets`` package (which
Streamlit's server already brings).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: (file stem, URL path) of every page, in navigation order (the default page is at /).
PAGES: tuple[tuple[str, str], ...] = (
    ("sweeps", ""),
    ("convergence", "convergence"),
    ("leaderboard", "leaderboard"),
    ("tuning", "tuning"),
    ("analysis", "analysis"),
    ("trial", "trial"),
)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
)
#: JavaScript: is the app idle (script finished, nothing still loading)?
_STATE_JS = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  return JSON.stringify({
    app: !!app,
    state: app ? app.getAttribute('data-test-script-state') : null,
    skeletons: document.querySelectorAll('[data-testid="stSkeleton"]').length,
    plots: document.querySelectorAll('.js-plotly-plot').length,
    drawn: document.querySelectorAll('.js-plotly-plot .main-svg').length,
    exceptions: document.querySelectorAll('[data-testid="stException"]').length,
    height: main ? main.scrollHeight : document.body.scrollHeight,
    text: (main || document.body).innerText.length,
  });
})()"""


@dataclass(frozen=True)
class PageResult:
    """What a page looked like once it settled."""

    url: str
    dom: str
    text: str
    exceptions: int
    plots: int
    seconds: float
    screenshot: Path | None

    @property
    def ok(self) -> bool:
        """Rendered without a Streamlit exception box or a Python traceback."""
        return self.exceptions == 0 and "Traceback (most recent call last)" not in self.text


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) binary, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float = 60.0, alive: Callable[[], bool] | None = None
) -> None:
    """Wait until ``url`` answers 200 (e.g. Streamlit's ``/_stcore/health``); give up early
    when ``alive()`` says the server process has exited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise TimeoutError(f"the server exited before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last})")


class Chromium:
    """One headless Chromium, driven over the DevTools protocol (one tab)."""

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000) -> None:
        from websockets.sync.client import connect

        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError("no chromium binary found (apt-get install chromium)")
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="bench-chromium-")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port = self._devtools_port(Path(self._profile.name) / "DevToolsActivePort")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws_cm = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ws = self._ws_cm.__enter__()
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self._viewport(height)

    def _devtools_port(self, path: Path, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(path.read_text().splitlines()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def _viewport(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def load(
        self, url: str, *, screenshot: Path | None = None, timeout: float = 30.0,
        max_height: int = 3200,
    ) -> PageResult:
        """Open ``url``, wait until the Streamlit script is idle and the charts are drawn,
        optionally save a full-page PNG, and return the DOM and visible text."""
        self._viewport(self.height)
        t0 = time.monotonic()
        self.call("Page.navigate", url=url)
        time.sleep(0.3)
        deadline = t0 + timeout
        stable, last = 0, None
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            raw = self.evaluate(_STATE_JS)
            state = json.loads(raw) if isinstance(raw, str) else {}
            idle = (state.get("app") and state.get("state") == "notRunning"
                    and not state.get("skeletons") and state.get("drawn", 0) >= state.get(
                        "plots", 0) and state.get("text", 0) > 0)
            key = (state.get("plots"), state.get("height"), state.get("text"))
            stable = stable + 1 if idle and key == last else 0
            last = key
            if stable >= 2:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        if screenshot is not None:
            height = int(min(max_height, max(self.height, int(state.get("height") or 0) + 80)))
            self._viewport(height)
            time.sleep(0.4)  # Plotly redraws on resize
            shot = self.call("Page.captureScreenshot", format="png")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        dom = str(self.evaluate("document.documentElement.outerHTML") or "")
        text = str(self.evaluate("document.body.innerText") or "")
        return PageResult(url, dom, text, int(state.get("exceptions") or 0),
                          int(state.get("plots") or 0), seconds, screenshot)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws_cm.__exit__(None, None, None)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def dashboard_server(
    db: str,
    port: int | None = None,
    timeout: float = 60.0,
    *,
    args: Sequence[str] = (),
    bench: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """Run ``bench dashboard --db DB`` on a free port; yields its base URL (on 127.0.0.1).

    Args:
        args: More ``bench dashboard`` options (``--host``, ``--token``).
        bench: The command to run instead of this interpreter's ``bench_service.cli`` (an
            installed ``bench`` script, e.g. of a fresh virtual environment).
        env, cwd: The child's environment and working directory (default: this process's).
        log: A file that receives the command's output (else a temporary one).
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    command = list(bench) if bench is not None else [sys.executable, "-m", "bench_service.cli"]
    with contextlib.ExitStack() as stack:
        out = (stack.enter_context(log.open("w+b")) if log is not None
               else stack.enter_context(tempfile.TemporaryFile()))
        proc = subprocess.Popen(
            [*command, "dashboard", "--db", db, "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd,
        )
        try:
            try:
                wait_http(f"{base}/_stcore/health", timeout, alive=lambda: proc.poll() is None)
            except TimeoutError:
                out.seek(0)
                raise RuntimeError(
                    f"bench dashboard did not start:\n{out.read().decode()}") from None
            yield base
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def capture_pages(
    base: str, out: Path, *, sweep: str | None = None, query: dict[str, str] | None = None,
    pages: Sequence[tuple[str, str]] = PAGES, width: int = 1400,
    sweep_for: dict[str, str] | None = None,
) -> list[PageResult]:
    """Screenshot every page of a running dashboard into ``out/<page>.png``.

    ``sweep_for`` overrides the sweep per page (e.g. ``{"tuning": "tuned"}``).
    """
    results = []
    with Chromium(width=width) as browser:
        for stem, path in pages:
            chosen = (sweep_for or {}).get(stem, sweep)
            params = {**({"sweep": chosen} if chosen else {}), **(query or {})}
            suffix = ("?" + urllib.parse.urlencode(params)) if params else ""
            results.append(browser.load(f"{base}/{path}{suffix}", screenshot=out / f"{stem}.png"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="start `bench dashboard` on this database")
    where.add_argument("--url", help="use a dashboard already running at this base URL")
    parser.add_argument("--sweep", default=None, help="sweep to show (?sweep=...)")
    parser.add_argument("--sweep-for", action="append", default=[], metavar="PAGE=SWEEP",
                        help="another sweep for one page, e.g. tuning=tuned (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    sweep_for = dict(item.split("=", 1) for item in args.sweep_for)
    with contextlib.ExitStack() as stack:
        base = args.url or stack.enter_context(dashboard_server(args.db))
        results = capture_pages(base, args.out, sweep=args.sweep, sweep_for=sweep_for)
    for r in results:
        print(f"{'ok ' if r.ok else 'BAD'} {r.seconds:5.1f} s  {r.plots} charts  {r.screenshot}"
              f"  {r.url}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
