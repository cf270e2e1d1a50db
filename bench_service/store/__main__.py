"""``python -m bench_service.store upgrade|current|revision``: see ``migrate.main``."""

from __future__ import annotations

from bench_service.store.migrate import main

main()
