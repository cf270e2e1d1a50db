"""Errors as JSON problem details (RFC 9457), one stable shape for every failure.

Every error response is ``application/problem+json`` with ``type`` (``/problems/<code>``),
``title``, ``status``, ``detail`` (one line naming the field or value), ``instance`` (the
request path) and, for an invalid spec, ``errors``: ``[{"field": ..., "message": ...}]``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request body too large",
    415: "Unsupported media type", 422: "Invalid input", 500: "Internal error",
    503: "Service unavailable",
}


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldProblem] = []


class ProblemError(Exception):
    """Raised by a handler to answer with a problem."""

    def __init__(self, status: int, code: str, detail: str,
                 errors: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail[:2000]
        self.errors = errors or []
        self.headers = headers


def problem_response(request: Request | None, status: int, code: str, detail: str,
                     errors: list[tuple[str, str]] | None = None,
                     headers: dict[str, str] | None = None, path: str = "") -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{code}", "title": _TITLES.get(status, "Error"), "status": status,
        "detail": detail, "instance": request.url.path if request is not None else path,
        "errors": [{"field": f, "message": m} for f, m in (errors or [])[:50]],
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.status, exc.code, exc.detail, exc.errors,
                            exc.headers)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(request, exc.status_code, code, str(exc.detail),
                            headers=getattr(exc, "headers", None))


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors()[:50]:
        loc = [str(p) for p in err.get("loc", ())]
        errors.append((".".join(loc), str(err.get("msg", "invalid"))[:300]))
    first = f"{errors[0][0]}: {errors[0][1]}" if errors else "invalid request"
    return problem_response(request, 422, "invalid-request", first, errors)


async def _on_store(request: Request, exc: Exception) -> JSONResponse:
    from bench_service.store import DatabaseLockedError, ReadOnlyDatabaseError

    if isinstance(exc, (DatabaseLockedError, ReadOnlyDatabaseError)):
        return problem_response(request, 503, "database-unavailable", str(exc)[:2000])
    return problem_response(request, 422, "invalid-request", str(exc)[:2000])


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 500, "internal-error",
                            f"internal error ({type(exc).__name__}); the server log has it")


def install(app: Any) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    from bench_service.store import StoreError

    app.add_exception_handler(StoreError, _on_store)
    app.add_exception_handler(Exception, _on_crash)


#: OpenAPI ``responses`` entry for the error statuses an endpoint can answer.
def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "description": _TITLES.get(s, "Error"),
                "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}
