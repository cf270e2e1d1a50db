"""The HTTP service (``bench serve``): sweeps submitted over HTTP and run as Ray Jobs.

``create_app`` builds the FastAPI app over one store and one Ray cluster; ``serve`` is the
command (embedded Ray head or ``--ray-address``, tokens, bind checks, uvicorn).
"""

from __future__ import annotations

from bench_service.api.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
