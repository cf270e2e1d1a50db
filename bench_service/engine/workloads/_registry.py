"""The workload registry; its built-in entries are this package's modules, found on first use.

Each public module of ``bench_service.engine.workloads`` defines its workloads and registers
them with ``@WORKLOADS.register``; nothing lists the modules: ``package_modules`` discovers
them (``pkgutil``) the first time a workload is looked up, so adding a workload is adding one
file. The modules import this one and ``base``, never the package, so there is no cycle.
"""

from __future__ import annotations

import inspect
from typing import Any

from bench_service.engine.registry import Registry, package_modules
from bench_service.engine.workloads.base import Target, Workload


def _check_workload_class(cls: type[Workload]) -> None:
    """A registered workload is a concrete class with a ``Target`` (``bench list`` shows it)."""
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise TypeError(f"workload {cls.__name__} does not implement {missing}")
    if not isinstance(getattr(cls, "target", None), Target):
        raise TypeError(f"workload {cls.__name__} declares no target = Target(...)")


WORKLOADS: Registry[type[Workload]] = Registry(
    "workloads", kind=Workload, discover=package_modules("bench_service.engine.workloads"),
    validate=_check_workload_class,
)


def build_workload(
    name: str, params: dict[str, Any] | None = None, where: str = "workload"
) -> Workload:
    """Instantiate a registered workload with validated parameters."""
    cls = WORKLOADS.get(name, where=f"{where}.name" if where else "")
    return cls(**(params or {}))
