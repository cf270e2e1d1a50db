"""Request body limit, counted as bytes arrive (a ``Content-Length`` is not trusted).

A pure ASGI middleware: it wraps ``receive`` so that the body's bytes are counted chunk by
chunk, and answers 413 (problem details) as soon as the count passes the limit, whatever
the request declared, chunked transfer included. A declared length over the limit is refused
before any of the body is read.
"""

from __future__ import annotations

from typing import Any

from bench_service.api.problems import problem_response

#: Default largest request body, in bytes.
MAX_BODY_BYTES = 1 << 20


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = (f"the request body is over the limit of {self.max_bytes:,} bytes; "
                  "nothing was stored")
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await problem_response(None, 413, "body-too-large", detail,
                                           path=scope.get("path", ""))(scope, receive, send)
                    return
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await problem_response(None, 413, "body-too-large", detail,
                                       path=scope.get("path", ""))(scope, receive, send)
