"""``pip install .`` (not editable) gives a working ``bench dashboard``.

The package is copied out of the checkout (so nothing outside ``bench_service/`` can help),
installed into a fresh virtual environment (``--system-site-packages`` for Streamlit and the
other dependencies: no network), and the installed ``bench`` script is started from a
directory outside the repository with a clean environment (no ``PYTHONPATH``). The server
must answer its health check and the Sweeps page must render in Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_service.dashboard.screenshots import Chromium, dashboard_server

pytestmark = pytest.mark.slow  # real dashboard servers: handed out first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with bench-service installed from a copy of the source tree."""
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    # Without its own pip and setuptools: Python's bundled ones are old (a setuptools without
    # bdist_wheel), while the system's (visible through --system-site-packages) build wheels.
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        capture_output=True, text=True, timeout=300)
    python = venv / "bin" / "python"
    if made.returncode != 0 or not python.exists():
        pytest.skip(f"cannot create a virtual environment here: {made.stderr[-300:]}")
    has_pip = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True,
                             timeout=120)
    if has_pip.returncode != 0:
        pytest.skip("no pip visible to a virtual environment (pip is not installed)")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "bench_service", src / "bench_service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", str(src)],
        capture_output=True, text=True, timeout=600, cwd=base)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    return venv


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    return {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
            "LANG": "C.UTF-8"}


@pytest.mark.slow
def test_installed_package_is_the_wheel_not_the_checkout(wheel_venv: Path,
                                                         tmp_path: Path) -> None:
    probe = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c",
         "import bench_service.dashboard_launcher as l; print(l.app_path())"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=_clean_env(wheel_venv, tmp_path))
    assert probe.returncode == 0, probe.stderr
    app = Path(probe.stdout.strip())
    assert app.is_file() and wheel_venv in app.parents  # inside the venv's site-packages
    assert (app.parent / "views" / "leaderboard.py").is_file()


@pytest.mark.slow
def test_wheel_install_serves_the_dashboard(
    wheel_venv: Path, dash_db: str, chromium: str, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with dashboard_server(dash_db, bench=[str(wheel_venv / "bin" / "bench")],
                          env=_clean_env(wheel_venv, tmp_path), cwd=elsewhere,
                          timeout=120) as base, Chromium(chromium) as browser:
        page = browser.load(f"{base}/?sweep=grid", timeout=60)
        board = browser.load(f"{base}/leaderboard?sweep=grid", timeout=60)
    assert page.ok and "Sweeps" in page.text and "grid" in page.text, page.text[:1000]
    assert board.ok and "Ranking per workload" in board.text, board.text[:1000]
    assert not (elsewhere / "bench.db").exists()
