"""Helpers of the service tests: start a real `bench serve`, users and tokens, waits."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _helpers import bench_cmd, free_port

#: The test users: name -> token. ``root`` is an admin.
TOKENS = {"alice": "alice-token-1234", "bob": "bob-token-5678", "root": "root-token-9999"}


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 240, every: float = 0.3
             ) -> Any:
    """Poll ``pred`` until it returns something truthy (hang guard, not a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@dataclass
class Server:
    """A running ``bench serve``."""

    url: str
    db: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, user: str | None = "alice") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=300,
                            headers=auth(user) if user else {})

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(db: str, tmp: Path, *, ray_address: str | None, env: dict[str, str],
                 extra_args: tuple[str, ...] = ()) -> Server:
    """Start ``bench serve`` on a free port and wait until ``/health`` answers."""
    port = free_port()
    args = ["serve", "--db", db, "--port", str(port), *extra_args]
    if ray_address is not None:
        args += ["--ray-address", ray_address]
    log = tmp / f"serve-{port}.log"
    server = Server(f"http://127.0.0.1:{port}", db, args, env, log)
    launch(server)
    return server


def launch(server: Server, port: int | None = None) -> None:
    if port is not None:
        i = server.args.index("--port")
        server.args[i + 1] = str(port)
        server.url = f"http://127.0.0.1:{port}"
    with server.log.open("ab") as out:
        server.proc = subprocess.Popen(bench_cmd(*server.args), env=server.env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up() -> bool:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise AssertionError(f"bench serve exited:\n{server.output()}")
        try:
            return httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, "bench serve to answer /health", timeout=300)


def tiny_spec(name: str, *, seeds: int = 2, epochs: int = 1, optimizers: tuple[str, ...] = (
        "sgd", "adam"), **extra: Any) -> dict[str, Any]:
    return {"name": name, "workloads": ["quadratic"], "optimizers": list(optimizers),
            "schedulers": ["constant"], "regularizers": ["none"],
            "seeds": list(range(seeds)), "budget": {"epochs": epochs}, **extra}


def sweep_state(server: Server, name: str) -> dict[str, Any]:
    with server.client() as c:
        resp = c.get(f"/sweeps/{name}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_job(server: Server, name: str, states: tuple[str, ...] = ("succeeded",),
             timeout: float = 300) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        s = sweep_state(server, name)
        if s["state"] in ("succeeded", "failed", "cancelled"):
            return s
        return None

    s = wait_for(ended, f"the job of sweep {name} to end", timeout=timeout, every=1.0)
    assert s["state"] in states, s
    return dict(s)
