"""One real Ray head and real ``bench serve`` processes, shared by the service's tests.

The Ray head (``ray start --head --block``, token authentication on, every port free) is
started once per session; a SQLite and a PostgreSQL server (uvicorn in a ``bench serve``
subprocess on a free port, ``--ray-address`` to that head) once per session each, so the
suite pays Ray's start-up once. Tests use their own sweep names, so they share the servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import bench_cmd, cli_env, free_port

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


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Any]:
    """A real local Ray head with token authentication (the test process holds its token)."""
    from bench_service.api.ray_head import start_head

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    head = start_head(num_cpus=2)
    try:
        yield head
    finally:
        head.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice stored hashed, bob as a plain token, root an admin (hashed)."""
    from bench_service.api.auth import token_hash

    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(f"# test users\nalice={token_hash(TOKENS['alice'])}\n"
                    f"bob={TOKENS['bob']}\nroot:admin={token_hash(TOKENS['root'])}\n")
    return path


def _server(db: str, tmp: Path, ray_head: Any, tokens_file: Path) -> Iterator[Server]:
    env = cli_env()
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]})
    server = start_server(db, tmp, ray_address=ray_head.dashboard_url, env=env,
                          extra_args=("--tokens", str(tokens_file)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory, ray_head: Any,
                  tokens_file: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("svc-sqlite")
    yield from _server(f"sqlite:///{tmp / 'bench.db'}", tmp, ray_head, tokens_file)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory, ray_head: Any, tokens_file: Path,
              pg_database: Any) -> Iterator[Server]:
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"svc_{uuid.uuid4().hex[:12]}"  # as the root conftest's pg_url does
    engine = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = pg_database.update_query_dict({"options": f"-csearch_path={schema}"})
    tmp = tmp_path_factory.mktemp("svc-pg")
    yield from _server(url.render_as_string(hide_password=False), tmp, ray_head, tokens_file)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each test once per backend, on the session's servers."""
    name = "sqlite_server" if request.param == "sqlite" else "pg_server"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


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
