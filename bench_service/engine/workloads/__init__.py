"""Workloads: test problems found by name, and the interface a plug-in workload implements.

The public face for plug-ins (kept stable): ``Workload``, ``Dataset``, ``Target``,
``ArchOptions``, ``NORMS``, the registry ``WORKLOADS`` and ``build_workload``. The built-in
workloads are the modules of this package; ``WORKLOADS`` imports them on its first lookup, so
importing this package imports none of them (and none of them imports this package's names).
"""

from __future__ import annotations

from bench_service.engine.workloads._registry import WORKLOADS, build_workload
from bench_service.engine.workloads.base import (
    NORMS,
    ArchOptions,
    Dataset,
    Target,
    Workload,
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
