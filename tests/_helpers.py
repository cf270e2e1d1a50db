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


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench_service.cli", *args]


def run_bench(*args: str, cwd: Path | str | None = None, timeout: float = 300
              ) -> subprocess.CompletedProcess[str]:
    """Run the ``bench`` command as a user would (a real process), capturing its output."""
    return subprocess.run(bench_cmd(*args), cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
