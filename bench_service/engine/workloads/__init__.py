"""Workload registry: test problems found by name. Importing this package registers them."""

from __future__ import annotations

from bench_service.engine.registry import Registry
from bench_service.engine.workloads.base import (
    NORMS,
    ArchOptions,
    Dataset,
    Target,
    Workload,
)

WORKLOADS: Registry[type[Workload]] = Registry("workloads")


def build_workload(name: str, params: dict | None = None, where: str = "workload") -> Workload:
    """Instantiate a registered workload with validated parameters."""
    cls = WORKLOADS.get(name, where=f"{where}.name" if where else "")
    return cls(**(params or {}))


# Registration happens on import of each module (one class per file).
from bench_service.engine.workloads import (  # noqa: E402,F401
    char_lm,
    digits,
    linreg,
    quadratic,
    rosenbrock,
)

__all__ = [
    "NORMS",
    "WORKLOADS",
    "ArchOptions",
    "Dataset",
    "Target",
    "Workload",
    "build_workload",
]
