"""``bench serve`` with no ``--ray-address``: it starts and owns an embedded Ray head (token
auth on, never port 6379), runs a submitted sweep on it as a Ray Job, and takes the head
down when it stops."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from _helpers import cli_env
from _service import start_server, tiny_spec, wait_for, wait_job

pytestmark = pytest.mark.slow


def test_embedded_head_runs_jobs_and_stops_with_the_server(tmp_path: Path) -> None:
    env = cli_env()
    for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "BENCH_API_TOKENS", "BENCH_API_TOKENS_FILE"):
        env.pop(key, None)
    server = start_server(f"sqlite:///{tmp_path / 'bench.db'}", tmp_path, ray_address=None,
                          env=env, extra_args=("--num-cpus", "1"))
    try:
        with server.client(None) as c:  # no tokens: a loopback server for local use
            health = c.get("/health").json()
            assert health["ray_embedded"] and ":6379" not in health["ray"]
            resp = c.post("/sweeps", json=tiny_spec("embedded", seeds=1, optimizers=("sgd",)))
            assert resp.status_code == 201, resp.text
        s = wait_job(server, "embedded")
        assert s["submitter"] == "local" and s["done"] == 1
        head = _head_dir(server.output())
        assert head is not None and Path(head).exists()
    finally:
        server.stop(signal.SIGTERM)
    assert server.proc is not None and server.proc.returncode == 0, server.output()
    wait_for(lambda: not Path(head).exists(), "the embedded head's temp dir to go", 60)
    assert not _processes_of(head)


def _head_dir(log: str) -> Any:
    import re

    found = re.search(r"embedded head, logs in (\S+?)\)", log)
    return found.group(1) if found else None


def _processes_of(marker: str) -> list[int]:
    import os

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="ignore"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids
