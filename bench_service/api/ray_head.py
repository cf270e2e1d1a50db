"""The embedded local Ray head of ``bench serve`` (no ``--ray-address``).

Started as ``ray start --head --block`` in a child process with its own temp dir and every
port chosen free (never 6379, whatever else runs on the machine), token authentication on,
and the job server (dashboard) on 127.0.0.1. The service then submits to it over HTTP exactly
as to a remote cluster. The head is owned by the server: it is stopped when the server
stops, and dies with it (``PR_SET_PDEATHSIG``) when the server is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

#: Ports of a head node, each given explicitly so that none is a default another Ray uses.
_PORT_FLAGS = (
    "--port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port",
    "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port", "--metrics-export-port",
)
#: Seconds the job supervisor waits for a stopped job's driver to cancel (SIGTERM) before it
#: kills it: the driver marks its unfinished trials ``cancelled`` in that time.
STOP_WAIT_S = 30


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in ports and port != 6379:
            ports.append(port)
    return ports


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()


def ray_command() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


@dataclass
class EmbeddedHead:
    """A running embedded head: its job-server URL and what stopping it needs."""

    dashboard_url: str
    gcs_address: str
    temp_dir: str
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    def stop(self) -> None:
        """SIGTERM the blocking ``ray start`` (it stops its processes), then make sure no
        process of this head's temp dir is left."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _kill_marked(self.temp_dir)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(num_cpus: int | None = None, timeout: float = 180) -> EmbeddedHead:
    """Start the embedded head and wait until its job server answers.

    ``RAY_AUTH_TOKEN`` is used when set, else a new random token is made for this head; it
    is put in this process's environment (the job client sends it) and the head's.

    Raises:
        RuntimeError: The head did not come up within ``timeout`` seconds (its output says
            why).
    """
    token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    temp_dir = tempfile.mkdtemp(prefix="bsray", dir="/tmp")  # unix sockets want short paths
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S)})
    root = str(Path(__file__).resolve().parents[2])
    if root not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    args = [ray_command(), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--disable-usage-stats",
            f"--temp-dir={temp_dir}", "--num-gpus=0",
            *(f"{flag}={port}" for flag, port in ports.items())]
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    log = Path(temp_dir) / "bench-ray-start.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    head = EmbeddedHead(f"http://127.0.0.1:{ports['--dashboard-port']}",
                        f"127.0.0.1:{ports['--port']}", temp_dir, proc, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _job_server_up(head.dashboard_url):
            return head
        time.sleep(0.5)
    output = log.read_text(errors="replace")[-2000:]
    head.stop()
    raise RuntimeError(f"the embedded Ray head did not start: {output.strip()}")


def _job_server_up(url: str) -> bool:
    token = os.environ.get("RAY_AUTH_TOKEN", "")
    req = urllib.request.Request(f"{url}/api/version",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _kill_marked(temp_dir: str) -> None:
    """SIGKILL what is left of the head: processes holding files under its temp dir (Ray's
    workers rewrite their command line but keep their logs open)."""
    for _ in range(20):
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                hit = temp_dir in cmd or any(
                    os.readlink(fd).startswith(temp_dir)
                    for fd in Path(f"/proc/{entry}/fd").iterdir())
            except OSError:
                continue
            if hit:
                pids.append(int(entry))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
