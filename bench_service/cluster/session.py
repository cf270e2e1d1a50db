"""Connect to a Ray cluster or start an embedded local one, and clean up after ourselves."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray

import bench_service


@dataclass(frozen=True)
class RaySession:
    """What the driver is connected to."""

    address: str
    started_here: bool
    cpus: float
    gpus: float


def _package_root() -> str:
    return str(Path(bench_service.__file__).resolve().parent.parent)


@contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None
) -> Iterator[RaySession]:
    """Yield a connected Ray session.

    ``address`` (or ``RAY_ADDRESS``) connects to an existing cluster (``ray start --head``,
    KubeRay); the cluster keeps running afterwards. Without one, an embedded local Ray is
    started (never silently attaching to some other ``ray start`` on this machine) and
    stopped on exit. The local workers import the same ``bench_service`` as the driver.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    already = ray.is_initialized()
    if not already:
        if address is None:
            root = _package_root()
            path = os.environ.get("PYTHONPATH", "")
            if root not in path.split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
            ray.init(
                address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                include_dashboard=False, logging_level=logging.WARNING,
                configure_logging=True, log_to_driver=True,
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    try:
        res = ray.cluster_resources()
        ctx = ray.get_runtime_context()
        yield RaySession(
            address=str(getattr(ctx, "gcs_address", address or "local")),
            started_here=not already and address is None,
            cpus=float(res.get("CPU", 0.0)),
            gpus=float(res.get("GPU", 0.0)),
        )
    finally:
        if not already:
            ray.shutdown()
