"""Fixtures of the dashboard tests: real sweeps in a SQLite file, the app under AppTest.

The session database is filled once (about 10 s) by ``_sweep_db``: a 25-trial grid sweep
trained by the engine (one trial diverges), a tuned sweep (tuning and final trials) and a
sweep caught mid-run. Tests that change a database work on a copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

APP = Path(__file__).resolve().parents[2] / "bench_service" / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def dash_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of the session's SQLite database with the ``grid``, ``tuned`` and ``live`` sweeps."""
    from _sweep_db import build_all

    path = tmp_path_factory.mktemp("dashdb") / "bench.db"
    return build_all(f"sqlite:///{path}")


@pytest.fixture
def db_copy(dash_db: str, tmp_path: Path) -> str:
    """A private copy of the session database (for tests that write to it)."""
    src = sqlite3.connect(dash_db.removeprefix("sqlite:///"))
    target = tmp_path / "copy.db"
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)  # consistent even with a WAL file beside the source
    src.close()
    dst.close()
    return f"sqlite:///{target}"


@pytest.fixture
def empty_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``make_app(db_url, **query_params)`` → an ``AppTest`` of the dashboard (not run yet).

    The URL reaches the app the way ``bench dashboard`` passes it: ``$BENCH_DB_URL``.
    """
    from streamlit.testing.v1 import AppTest

    def make(db_url: str, **params: str) -> Any:
        monkeypatch.setenv("BENCH_DB_URL", db_url)
        at = AppTest.from_file(str(APP), default_timeout=60)
        for key, value in params.items():
            at.query_params[key] = value
        return at

    return make


@pytest.fixture(scope="session")
def chromium() -> str:
    """A Chromium binary; installed with apt-get when missing and possible, else skip."""
    from bench_service.dashboard.screenshots import find_chromium

    binary = find_chromium()
    if binary is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                       timeout=600, check=False)
        binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium: `apt-get install -y chromium` was not possible here")
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        pytest.skip("the browser test drives Chromium with the `websockets` package")
    return binary
