"""The embedded Ray session, started inline or ahead of time in a background thread."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
import ray
import yaml
from _helpers import run_bench

from bench_service.cluster import session as session_mod
from bench_service.cluster.session import ray_session, start_local_ray_early, stop_early_ray
from bench_service.store import Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

#: Environment variable marking the Ray processes this test started: other processes on
#: the machine (other test runs, other users) start and stop raylets of their own meanwhile.
MARK = "BENCH_TEST_RAY_MARK"


@pytest.fixture(autouse=True)
def mark(monkeypatch: pytest.MonkeyPatch) -> str:
    """A marker in this test's environment, inherited by every Ray process it starts."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    return value


def _raylet_pids() -> set[int]:
    """Live raylets started from this test (carrying its marker)."""
    needle = f"{MARK}={os.environ[MARK]}".encode()
    pids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"raylet/raylet" in cmd and needle in Path(f"/proc/{pid}/environ"
                                                              ).read_bytes().split(b"\0"):
                    pids.add(int(pid))
            except OSError:
                continue
    return pids


@ray.remote(num_cpus=1)
def _pid() -> int:
    return os.getpid()


def test_a_session_uses_the_early_started_ray_and_stops_it() -> None:
    before = _raylet_pids()
    start_local_ray_early(num_cpus=1)
    assert session_mod._early is not None

    with ray_session() as s:
        assert s.started_here and s.cpus == 1.0
        assert ray.get(_pid.remote()) != os.getpid()
        assert len(_raylet_pids() - before) == 1
        assert session_mod._early is None  # taken by this session

    assert not ray.is_initialized()
    assert _raylet_pids() - before == set()


def test_an_early_ray_no_session_took_is_stopped() -> None:
    before = _raylet_pids()
    start_local_ray_early(num_cpus=1)

    stop_early_ray()

    assert session_mod._early is None and not ray.is_initialized()
    assert _raylet_pids() - before == set()
    stop_early_ray()  # nothing left: a no-op


def test_a_refused_spec_on_the_command_line_exits_2_and_leaves_no_ray(tmp_path: Path) -> None:
    # `bench run` starts the embedded Ray while it reads the spec; a spec refused after that
    # must still print its error, exit 2, write nothing and stop that Ray.
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump({"name": "typo", "workloads": ["linreg"],
                                    "optimizers": ["adamm"], "budget": {"epochs": 1}}))
    before = _raylet_pids()

    proc = run_bench("run", str(spec), "--db", str(tmp_path / "bench.db"), cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert "adamm" in proc.stderr and "adam" in proc.stderr and "Traceback" not in proc.stderr
    assert "SIGTERM" not in proc.stderr
    assert not (tmp_path / "bench.db").exists()
    assert _raylet_pids() - before == set()


def test_an_address_nobody_listens_on_exits_2_before_writing(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"name": "grid", "workloads": ["quadratic"],
                                    "optimizers": ["sgd"], "budget": {"epochs": 1}}))
    db = tmp_path / "bench.db"

    proc = run_bench("run", str(spec), "--db", str(db), "--address", f"127.0.0.1:{port}",
                     cwd=tmp_path, timeout=300)

    assert proc.returncode == 2, proc.stderr
    assert f"--address: nothing accepts connections at 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert Store(f"sqlite:///{db}").list_sweeps() == []
