"""Helpers for tests that drive the real ``bench`` command (importable: tests/ is on sys.path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env() -> dict[str, str]:
    """Environment for ``bench`` subprocesses: this checkout's package, no stray Ray address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def bench_cmd(*args: str, shared_ray: bool = False) -> list[str]:
    """``bench ARGS`` as a command line; with ``shared_ray``, a ``bench run`` joins this test
    process's Ray head (tests/_ray_head.py) instead of starting an embedded Ray of its own."""
    cmd = [sys.executable, "-m", "bench_service.cli", *args]
    return with_shared_ray(cmd) if shared_ray else cmd


def with_shared_ray(cmd: list[str]) -> list[str]:
    """``cmd`` (a ``bench run``) on the shared Ray head: for tests whose subject is not the
    embedded start, and whose trials need nothing from the driver's environment (a started
    head's workers have the head's). Unchanged unless ``BENCH_TEST_SHARED_RAY=1``."""
    import _ray_head

    address = _ray_head.address() if _ray_head.enabled() else None
    return cmd if address is None else [*cmd, "--address", address]


def run_bench(*args: str, cwd: Path | str | None = None, timeout: float = 300,
              shared_ray: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the ``bench`` command as a user would (a real process), capturing its output."""
    return subprocess.run(bench_cmd(*args, shared_ray=shared_ray), cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
