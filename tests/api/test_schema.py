"""A bounded schemathesis run against the real server's ``/openapi.json``: no 5xx, every
response conforms to the schema (status code, content type, body), and a rejected request
leaves the database as it was."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from _service import Server, auth
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.slow

_TABLES = ("bench_sweeps", "bench_trials", "bench_metrics")


@pytest.fixture(scope="module")
def api_schema(sqlite_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{sqlite_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _snapshot(db: str) -> tuple[Any, ...]:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return tuple(tuple(conn.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all())
                         for t in _TABLES)
    finally:
        engine.dispose()


@schema.parametrize()
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, sqlite_server: Server) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    before = _snapshot(sqlite_server.db)
    response = case.call(base_url=sqlite_server.url, headers=auth("alice"), timeout=120)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])
    if response.status_code >= 400:
        assert _snapshot(sqlite_server.db) == before, (case.method, case.path)
