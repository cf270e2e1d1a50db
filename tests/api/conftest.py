"""One real Ray head and real ``bench serve`` processes, shared by the service's tests.

The Ray head (``ray start --head --block``, token authentication on, every port free) is
started once per session; a SQLite and a PostgreSQL server (uvicorn in a ``bench serve``
subprocess on a free port, ``--ray-address`` to that head) once per session each, so the
suite pays Ray's start-up once. Tests use their own sweep names, so they share the servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import cli_env
from _service import TOKENS, Server, start_server


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Any]:
    """A real local Ray head with token authentication; its token is ``head.env
    ["RAY_AUTH_TOKEN"]`` (this process's environment is left as it was, so later tests'
    Ray sessions are not pointed at this head's token)."""
    from bench_service.api.ray_head import start_head

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    try:
        head = start_head(num_cpus=2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield head
    finally:
        head.stop()


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
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": ray_head.env["RAY_AUTH_TOKEN"]})
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


