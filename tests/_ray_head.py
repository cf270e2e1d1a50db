"""One Ray head per test process (per xdist worker), for the tests' ``bench run`` drivers.

Each embedded start of Ray costs seconds of CPU (GCS, raylet, agents) and, on a loaded
machine, can exceed Ray's fixed 30 s node start-up wait (``The current node timed out
during startup``). Tests whose subject is not the embedded start run their drivers against
this head instead (``run_bench(..., shared_ray=True)``, ``with_shared_ray(cmd)``): it starts
on first use, with retries, and is torn down when the session ends (``stop``, called from
tests/conftest.py). A few tests keep the embedded default on purpose (the README's commands,
the embedded session itself, a hung driver whose Ray must die with it, tests that configure
the trials' workers through the driver's environment: workers of a started head inherit the
head's environment, not the driver's).

Like tests/cluster/test_two_node.py: its own ports (never 6379, never Ray's fixed defaults,
so several heads and test clusters coexist), its own temp dir, token authentication off
(loopback only; ``~/.ray/auth_token`` would otherwise turn it on for the head but not for
drivers), and a cleanup that kills only the processes mentioning its temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _helpers import cli_env, free_port

#: 2 CPUs, as the tests' ``--num-cpus 2`` embedded runs have.
NUM_CPUS = 2
#: ``BENCH_TEST_SHARED_RAY=1`` turns the shared head on. Off by default: in a run on a
#: machine at load ~25-35 some drivers on it failed at their MetricWriter's start ("The actor
#: never ran - it was cancelled before it started running"), not yet understood; the
#: ``shared_ray=True`` call sites then start their embedded Ray as before.
ENABLE_ENV = "BENCH_TEST_SHARED_RAY"

_PORT_FLAGS = {
    "node_manager": "--node-manager-port", "object_manager": "--object-manager-port",
    "client_server": "--ray-client-server-port", "agent_listen": "--dashboard-agent-listen-port",
    "agent_grpc": "--dashboard-agent-grpc-port", "runtime_env_agent": "--runtime-env-agent-port",
    "metrics_export": "--metrics-export-port",
}

_address: str | None = None
_temp_dir: str | None = None
_failed = False


def enabled() -> bool:
    """On with ``BENCH_TEST_SHARED_RAY=1``, unless the head could not be started this session
    (the drivers then start their embedded Ray, as ``bench run`` does by default)."""
    return os.environ.get(ENABLE_ENV, "0").strip() == "1" and not _failed


def _start_failed(why: str) -> None:
    global _failed
    _failed = True
    warnings.warn(f"no shared Ray head, the drivers start their own Ray: {why}", stacklevel=3)


def env() -> dict[str, str]:
    """The environment of the head (and so of every trial's worker): this checkout's package."""
    out = cli_env()
    out.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    return out


def address() -> str | None:
    """``host:port`` of this process's head, started now if it is not running yet; ``None``
    when it cannot be started (three tries)."""
    global _address, _temp_dir
    if _address is not None:
        return _address
    last = ""
    for _ in range(3):  # a start-up can time out on a loaded machine: a fresh try
        temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # unix sockets: a short path
        ports: dict[str, int] = {}
        while len(set(ports.values())) < len(_PORT_FLAGS) + 1:
            ports = {name: free_port() for name in ("gcs", *_PORT_FLAGS)}
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray) if ray.exists() else "ray", "start", "--head", f"--port={ports['gcs']}",
               f"--num-cpus={NUM_CPUS}", "--num-gpus=0", f"--temp-dir={temp_dir}",
               "--include-dashboard=false", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--object-store-memory={200 * 2**20}",
               *(f"{flag}={ports[name]}" for name, flag in _PORT_FLAGS.items())]
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600,
                              check=False)
        here = f"127.0.0.1:{ports['gcs']}"
        # `ray start` gives up when the raylet takes over 30 s to register (a fixed wait in
        # Ray), but leaves the processes starting: on a loaded machine the node often comes
        # up a little later, which beats starting all of it again.
        if proc.returncode == 0 or _node_alive(here):
            _address, _temp_dir = here, temp_dir
            return _address
        last = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        _kill(temp_dir)
    _start_failed(f"`ray start --head` failed three times:\n{last}")
    return None


_PROBE = (
    "import logging, sys, time, ray\n"
    "ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)\n"
    "deadline = time.monotonic() + 120\n"
    "while not any(n['Alive'] for n in ray.nodes()) and time.monotonic() < deadline:\n"
    "    time.sleep(0.5)\n"
    "sys.exit(0 if any(n['Alive'] for n in ray.nodes()) else 1)\n"
)


def _node_alive(address: str) -> bool:
    """Whether the head at ``address`` has (or within 2 min gets) a live node."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, address], env=env(),
                              capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def stop() -> None:
    """Kill the head's processes (if it was started) and remove its temp dir."""
    global _address, _temp_dir
    if _temp_dir is not None:
        _kill(_temp_dir)
    _address = _temp_dir = None


def _kill(temp_dir: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = _pids_of(temp_dir)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _pids_of(marker: str) -> list[int]:
    """Processes whose command line or open files mention ``marker`` (Ray workers rename
    themselves, ``ray::IDLE``, but keep their log files in the session dir open)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if marker in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry))
                continue
            for fd in Path(f"/proc/{entry}/fd").iterdir():
                if os.readlink(fd).startswith(marker):
                    pids.append(int(entry))
                    break
        except (OSError, ValueError):
            continue
    return pids
