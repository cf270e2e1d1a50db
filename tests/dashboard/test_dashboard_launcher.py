"""``bench dashboard``: the launcher finds the app, builds the Streamlit command, fails clearly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench_service import dashboard_launcher as launcher
from bench_service.cli import main as bench

pytestmark = pytest.mark.slow  # real dashboard servers: handed out first (tests/conftest.py)

APP = Path(__file__).resolve().parents[2] / "bench_service" / "dashboard" / "app.py"


def test_app_ships_inside_the_package() -> None:
    assert launcher.app_path() == APP
    assert (APP.parent / "views" / "trial.py").is_file()


def test_command_is_headless_local_and_private() -> None:
    cmd = launcher.streamlit_command(APP, "127.0.0.1", 8765)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8765"
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert not any("postgresql" in part or "sqlite" in part for part in cmd)  # URL via env


def test_missing_app_exits_2_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bench_service.store import Store

    Store(tmp_path / "x.db").close()  # the database exists: the missing app is what fails
    monkeypatch.setattr(launcher, "app_path", lambda: None)
    assert bench(["dashboard", "--db", str(tmp_path / "x.db")]) == 2
    assert "bench_service/dashboard/app.py" in capsys.readouterr().err


def test_bad_port_and_bad_url_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Streamlit must not be started")

    monkeypatch.setattr(launcher.subprocess, "Popen", never)
    assert bench(["dashboard", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert bench(["dashboard", "--db", "nosuchdialect://x"]) == 2


def _record_launches(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Record the command and environment the launcher would start Streamlit with."""
    seen: dict[str, object] = {}

    class FakePopen:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            seen["cmd"], seen["env"] = cmd, env

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(launcher.subprocess, "Popen", FakePopen)
    return seen


def test_url_reaches_the_app_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _record_launches(monkeypatch)
    (tmp_path / "r.db").touch()
    assert launcher.launch(str(tmp_path / "r.db"), port=8999) == 0
    env = seen["env"]
    assert isinstance(env, dict) and env["BENCH_DB_URL"] == f"sqlite:///{tmp_path / 'r.db'}"
    assert "8999" in seen["cmd"]  # type: ignore[operator]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.7", False), ("no-such-host.invalid", False),
])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert launcher.is_loopback(host) is loopback


def test_printed_address_is_the_bind_address() -> None:
    assert launcher.display_url("0.0.0.0", 8600) == "http://0.0.0.0:8600"
    assert launcher.display_url("::", 8600) == "http://[::]:8600"


def test_token_reaches_the_app_through_the_environment_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _record_launches(monkeypatch)
    token = "s3cret-token-abcdefghijkl"
    monkeypatch.delenv("BENCH_DASHBOARD_TOKEN", raising=False)
    (tmp_path / "r.db").touch()
    assert launcher.launch(str(tmp_path / "r.db"), host="0.0.0.0", port=8999,
                           token=token) == 0
    assert seen["env"]["BENCH_DASHBOARD_TOKEN"] == token  # type: ignore[index]
    assert token not in " ".join(seen["cmd"])  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "http://0.0.0.0:8999" in err and token not in err


def test_a_missing_sqlite_file_is_not_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Streamlit must not be started")

    monkeypatch.setattr(launcher.subprocess, "Popen", never)
    assert bench(["dashboard", "--db", str(tmp_path / "typo.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()
