"""Connect to a Ray cluster or start an embedded local one, and clean up after ourselves."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

import bench_service
from bench_service.cluster import signals
from bench_service.engine.errors import ConfigError


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
    stopped on exit; one started ahead by ``start_local_ray_early`` is used instead. The
    local workers import the same ``bench_service`` as the driver.
    """
    global _early
    address = address or os.environ.get("RAY_ADDRESS") or None
    early, _early = (_early, None) if address is None else (None, _early)
    if early is not None:
        try:
            early.wait()
        except BaseException:
            early.close()
            raise
    already = early is None and ray.is_initialized()
    if early is None and not already:
        if address is None:
            _init_local(num_cpus, num_gpus)
        else:
            _connect(address)
    # ray.init replaced the SIGTERM handler by its sys.exit: SIGTERM cancels like Ctrl-C.
    previous = signals.install_sigterm_handler()
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
        if early is not None:
            early.close()
        elif not already:
            if address is None:
                _kill_autoscaler_monitor()
            ray.shutdown()
        signals.restore_sigterm_handler(previous)


class ClusterUnreachable(ConfigError):
    """``--address`` (or ``RAY_ADDRESS``) names no Ray cluster this driver can join."""


def check_address(address: str | None) -> None:
    """Raise ``ClusterUnreachable`` now if the cluster to join (``address`` or
    ``RAY_ADDRESS``) does not listen: callers check before writing anything."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_reachable(address)


def _connect(address: str) -> None:
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, TimeoutError) as exc:
        raise ClusterUnreachable(
            "--address", f"cannot connect to a Ray cluster at {address} ({exc}); is `ray "
            "start --head` running there, and does this machine have the cluster's auth token?"
        ) from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on: ``ray.init`` would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnreachable(
            "--address", f"nothing accepts connections at {address} ({exc.strerror or exc}); "
            "start the cluster's head there with `ray start --head --port PORT`"
        ) from None


#: Environment variable: ``1`` says the cluster autoscales, so a trial request that no node
#: fits now is waited for (with a message) instead of refused, where Ray does not publish an
#: autoscaler configuration to check it against.
AUTOSCALING_ENV = "BENCH_AUTOSCALING"
_EPS = 1e-9


def check_resources(session: RaySession, cpus_per_trial: float, gpus_per_trial: float
                    ) -> str | None:
    """Refuse a per-trial request that no node of the cluster can ever hold.

    Ray queues a task that fits no node forever, without a word (``cpus_per_trial: 64`` on a
    2-CPU machine, ``gpus_per_trial: 1`` with no GPU). One trial runs on one node, so the
    request must fit a single node, not the cluster's total. On an autoscaling cluster a
    bigger node may yet come: if the autoscaler's published node types (KubeRay, the cluster
    launcher) hold one that fits, or ``BENCH_AUTOSCALING=1`` says so, a message saying what
    the sweep waits for is returned for the driver to print instead.

    Returns:
        ``None`` when a live node fits the request now, else the waiting message.

    Raises:
        ConfigError: No node (and no node type the autoscaler may add) fits; the message
            names the field, the request and the biggest node.
    """
    nodes = [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
    if any(_fits(r, cpus_per_trial, gpus_per_trial) for r in nodes):
        return None
    biggest = max(nodes, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)), default={})
    want = _amount(cpus_per_trial, gpus_per_trial)
    have = _amount(biggest.get("CPU", 0.0), biggest.get("GPU", 0.0))
    node_types = _autoscaler_node_types()
    if node_types is not None:
        can_add = [t for t in node_types if _fits(t, cpus_per_trial, gpus_per_trial)]
        if can_add:
            return (f"waiting for the autoscaler to add a node with {want} (each trial needs "
                    f"that; the biggest node now has {have})")
    elif os.environ.get(AUTOSCALING_ENV, "").strip() == "1":
        return (f"waiting for a node with {want} ({AUTOSCALING_ENV}=1: the cluster is said to "
                f"autoscale; the biggest node now has {have})")
    short_cpu = not any(r.get("CPU", 0.0) + _EPS >= cpus_per_trial for r in nodes)
    short_gpu = not any(r.get("GPU", 0.0) + _EPS >= gpus_per_trial for r in nodes)
    field = "resources.gpus_per_trial" if short_gpu and not short_cpu else \
        "resources.cpus_per_trial" if short_cpu and not short_gpu else "resources"
    where = "" if session.started_here else f" at {session.address}"
    scaling = "" if node_types is None else " (nor does any node type its autoscaler may add)"
    raise ConfigError(
        field, f"each trial asks for {want}, but no node of the Ray cluster{where} has that "
        f"much{scaling}: the biggest node has {have}, so the trials would wait forever; lower "
        "the request or use a bigger cluster"
    )


def _fits(resources: dict[str, float], cpus: float, gpus: float) -> bool:
    return resources.get("CPU", 0.0) + _EPS >= cpus and resources.get("GPU", 0.0) + _EPS >= gpus


def _amount(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU and {gpus:g} GPU"


def _autoscaler_node_types() -> list[dict[str, float]] | None:
    """The per-node resources of each node type the autoscaler may add (``max_count`` not 0);
    ``None`` when the cluster publishes no autoscaler configuration (no autoscaler, or one
    that does not say). Uses Ray's internal state API, as Ray Train does."""
    try:
        from ray._private.state import state

        config: Any = state.get_cluster_config()
    except Exception:
        return None
    if config is None or not config.node_group_configs:
        return None
    return [dict(group.resources) for group in config.node_group_configs
            if group.max_count != 0]


def _init_local(num_cpus: int | None, num_gpus: int | None) -> None:
    root = _package_root()
    path = os.environ.get("PYTHONPATH", "")
    if root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
    ray.init(
        address="local", num_cpus=num_cpus, num_gpus=num_gpus,
        include_dashboard=False, logging_level=logging.WARNING,
        configure_logging=True, log_to_driver=True,
    )


class _EarlyLocalRay:
    """An embedded local Ray starting in a background thread.

    ``ray.init`` takes ~4 s on 2 cores, most of it waiting for Ray's own processes (GCS,
    raylet, their Python agents) to start; the driver meanwhile imports torch and plans the
    sweep, so the two overlap. Ray's processes die with the *thread* that started them
    (``PR_SET_PDEATHSIG``), so this thread lives until ``close`` and shuts Ray down itself.
    """

    def __init__(self, num_cpus: int | None, num_gpus: int | None) -> None:
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(num_cpus, num_gpus),
                                        name="bench-ray-start", daemon=True)
        self._thread.start()

    def _run(self, num_cpus: int | None, num_gpus: int | None) -> None:
        quiet = _DropMessage("SIGTERM handler is not set")  # the main thread sets one
        logging.getLogger("ray._private.worker").addFilter(quiet)
        try:
            _init_local(num_cpus, num_gpus)
        except BaseException as exc:  # handed to the main thread by wait()
            self._error = exc
            self._ready.set()
            return
        finally:
            logging.getLogger("ray._private.worker").removeFilter(quiet)
        self._ready.set()
        self._stop.wait()
        _kill_autoscaler_monitor()
        ray.shutdown()

    def wait(self) -> None:
        """Block until Ray is up; raise what ``ray.init`` raised, if it failed."""
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Shut Ray down (after its start-up, if still under way) and end the thread."""
        self._stop.set()
        self._thread.join()


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


#: The early-started embedded Ray the next ``ray_session()`` will use, if any.
_early: _EarlyLocalRay | None = None


def start_local_ray_early(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start the embedded local Ray now, in the background, for the next ``ray_session()``.

    For a driver that knows it will need the embedded Ray (``bench run`` without
    ``--address``) and has seconds of its own work first. Call ``stop_early_ray`` when no
    session ends up using it (a refused spec); that waits for the start-up to finish.
    Must be called from the main thread, whose SIGTERM handler it sets (``ray.init`` would
    have set one there): SIGTERM cancels the sweep like Ctrl-C (``signals``).
    """
    global _early
    if _early is not None or ray.is_initialized():
        return
    signals.install_sigterm_handler()
    _early = _EarlyLocalRay(num_cpus, num_gpus)


def stop_early_ray() -> None:
    """Stop an early-started Ray that no session took; nothing otherwise."""
    global _early
    early, _early = _early, None
    if early is not None:
        early.close()


def _kill_autoscaler_monitor() -> None:
    """Kill the embedded Ray's autoscaler monitor ahead of ``ray.shutdown``.

    Shutdown stops the GCS first; the monitor's SIGTERM handler then tries to report to the
    dead GCS, so Ray waits its full 1 s grace before killing it anyway (1 s of every
    ``bench run``). Killing it first is what that grace ends in, minus the wait. Uses Ray's
    private node handle, so any surprise there leaves the normal shutdown to do the work.
    """
    with contextlib.suppress(Exception):
        from ray._private import ray_constants, worker

        node: Any = worker._global_node
        for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
            info.process.kill()
            info.process.wait(timeout=2)
