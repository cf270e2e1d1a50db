"""`bench run --address` against a real two-node Ray cluster started with `ray start`.

One module-scoped cluster on this machine: a head node (1 CPU; it runs the driver's metric
writer) and a worker node (2 CPUs and a ``worker_node`` resource), each with its own ports,
sharing a private temp dir. The cluster uses its own auth token and fast health checks, so a
dead node is noticed in ~5 s. First a sweep runs through it and the cluster must survive the
command; then, last, a sweep runs while the worker node's raylet (and with it the Ray
workers it started) is SIGKILLed: Ray retries the lost trials on the head and every trial is
still stored exactly once.

Cleanup never uses ``ray stop`` (other Ray instances may run on this machine): it kills only
the processes whose command line or open files mention this cluster's temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import bench_cmd, cli_env, free_port

from bench_service.store import Store

pytestmark = pytest.mark.slow

HEAD_PORTS = ("gcs", "node_manager", "object_manager", "client_server", "agent_listen",
              "agent_grpc", "runtime_env_agent", "metrics_export")
WORKER_PORTS = ("node_manager", "object_manager", "agent_listen", "agent_grpc",
                "runtime_env_agent", "metrics_export")

#: mlp_digits trials of ~0.6-2 s (40 epochs of 3 steps), depending on the machine.
EPOCHS = 40
#: The node-loss test's trials run 3x longer (~2-6 s): a trial shows as running in the
#: store only once it is FLUSH_SECONDS old, and the kill must find two of them running.
NODE_LOSS_EPOCHS = 3 * EPOCHS


def sweep_spec(name: str, seeds: int, epochs: int = EPOCHS) -> dict:
    return {
        "name": name, "workloads": ["mlp_digits"], "optimizers": ["sgd", "adam"],
        "schedulers": ["constant", "cosine"], "seeds": list(range(seeds)),
        "budget": {"epochs": epochs},
    }


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    found = str(exe) if exe.exists() else shutil.which("ray")
    if found is None:
        pytest.skip("the `ray` command is not installed")
    return found


def _port_flags(ports: dict[str, int]) -> list[str]:
    flags = {
        "node_manager": "--node-manager-port", "object_manager": "--object-manager-port",
        "client_server": "--ray-client-server-port",
        "agent_listen": "--dashboard-agent-listen-port",
        "agent_grpc": "--dashboard-agent-grpc-port",
        "runtime_env_agent": "--runtime-env-agent-port",
        "metrics_export": "--metrics-export-port",
    }
    return [f"{flags[k]}={v}" for k, v in ports.items() if k in flags]


def _unique_free_ports(names: tuple[str, ...], taken: set[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        out[name] = port
    return out


def _pids_of(markers: list[str]) -> list[int]:
    """Processes whose command line, or any open file, mentions one of ``markers``.

    Ray workers and agents rewrite their command line (``ray::IDLE``), but they keep their
    log files in the session dir (under the temp dir) open.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            if any(m in cmdline for m in markers):
                pids.append(int(entry))
                continue
            fds = Path(f"/proc/{entry}/fd")
            for fd in fds.iterdir():
                target = os.readlink(fd)
                if any(target.startswith(m) for m in markers if m.startswith("/")):
                    pids.append(int(entry))
                    break
        except (OSError, ValueError):
            continue
    return pids


def _kill_all(markers: list[str]) -> None:
    """SIGKILL this cluster's processes, repeatedly, until none is left (or 10 s passed)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _pids_of(markers)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@dataclass
class Cluster:
    temp_dir: str
    head: dict[str, int]
    worker: dict[str, int]
    env: dict[str, str]
    worker_lost: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.head['gcs']}"

    def markers(self) -> list[str]:
        return [self.temp_dir]

    def nodes(self, wait_for: int = 0, timeout: float = 300) -> list[dict]:
        """``ray.nodes()`` as a driver of this cluster sees it (from a separate process).

        With ``wait_for``, polls until that many nodes are alive (the worker node registers
        with the GCS shortly after ``ray start`` returns).
        """
        code = (
            "import json, sys, time, logging, ray\n"
            "ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)\n"
            "deadline = time.monotonic() + float(sys.argv[3])\n"
            "while True:\n"
            "    nodes = ray.nodes()\n"
            "    alive = [n for n in nodes if n['Alive']]\n"
            "    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline: break\n"
            "    time.sleep(0.2)\n"
            "print('NODES=' + json.dumps([{k: n[k] for k in ('NodeID', 'Alive',\n"
            "      'NodeManagerPort', 'Resources')} for n in nodes]), flush=True)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code, self.address, str(wait_for),
                               str(timeout)], env=self.env, capture_output=True, text=True,
                              timeout=timeout + 60, check=False)
        assert proc.returncode == 0, proc.stderr
        # Ray may print its own warnings (lagging heartbeats, ...) around ours: find our line.
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NODES=")), None)
        assert line is not None, f"no node list in:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(line.removeprefix("NODES="))


def _start_node(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # unix sockets need a short path
    taken: set[int] = set()
    head = _unique_free_ports(HEAD_PORTS, taken)
    worker = _unique_free_ports(WORKER_PORTS, taken)
    env = cli_env()
    env.update({
        # Our own token: independent of ~/.ray/auth_token (which `ray start --head` would
        # pick up by default, while `ray start --address` and drivers given an address
        # would not).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        # The GCS declares a node dead after 5 failed health checks 1 s apart (~5 s)
        # instead of the default 5 × 3 s; still lenient enough for a busy 2-core machine.
        "RAY_health_check_initial_delay_ms": "0",
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "5",
    })
    c = Cluster(temp_dir, head, worker, env)
    ray = _ray_cli()
    common = ["--node-ip-address=127.0.0.1", "--num-gpus=0", "--disable-usage-stats",
              f"--object-store-memory={200 * 2**20}"]
    try:
        _start_node([ray, "start", "--head", f"--port={head['gcs']}", "--num-cpus=1",
                     f"--temp-dir={temp_dir}", "--include-dashboard=false", *common,
                     *_port_flags(head)], env)
        _start_node([ray, "start", f"--address={c.address}", "--num-cpus=2",
                     "--resources", json.dumps({"worker_node": 2}), *common,
                     *_port_flags(worker)], env)
        nodes = c.nodes(wait_for=2)
        assert len([n for n in nodes if n["Alive"]]) == 2, nodes
        # the worker node shares the head's temp dir, so the cleanup below finds it too
        raylet = _raylet_pid(worker["node_manager"])
        assert temp_dir in Path(f"/proc/{raylet}/cmdline").read_bytes().decode(), raylet
        yield c
    finally:
        _kill_all(c.markers())
        shutil.rmtree(temp_dir, ignore_errors=True)


def _write_spec(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _bench_run(c: Cluster, spec: Path, db: Path, tmp_path: Path) -> subprocess.Popen[str]:
    """`bench run SPEC --address ... --db ...` as a real process; output goes to files."""
    with (tmp_path / "stdout.txt").open("w") as out, (tmp_path / "stderr.txt").open("w") as err:
        return subprocess.Popen(
            bench_cmd("run", str(spec), "--address", c.address, "--db", str(db),
                      "--no-progress"),
            cwd=tmp_path, env=c.env, stdout=out, stderr=err, text=True,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen[str], tmp_path: Path, timeout: float) -> tuple[str, str]:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()


def _counts(db: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM bench_trials GROUP BY status"))
    except sqlite3.OperationalError:
        return {}


def _wait_for(pred: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout:g} s: {what}")


def _max_overlap(trials: pd.DataFrame) -> int:
    """Most trials running at one moment, from their stored start and finish times."""
    events = [(t, 1) for t in trials["started_at"]] + [(t, -1) for t in trials["finished_at"]]
    best = cur = 0
    for _, delta in sorted(events):  # at equal times a finish (-1) sorts before a start
        cur += delta
        best = max(best, cur)
    return best


def check_stored_once(db: Path, name: str, n_trials: int, epochs: int = EPOCHS
                      ) -> pd.DataFrame:
    """Every trial stored once, completed, with each curve point stored exactly once."""
    store = Store(str(db))
    try:
        trials = store.trials_frame(name)
        val = store.curves_frame(name, names=["val_loss"], scope="epoch")
    finally:
        store.close()
    assert len(trials) == n_trials
    assert trials["trial_hash"].is_unique
    assert set(trials["status"]) == {"completed"}, trials[["trial_id", "status", "error"]]
    assert val["trial_id"].nunique() == n_trials
    assert (val.groupby("trial_id").size() == epochs).all()
    with sqlite3.connect(db) as conn:
        dupes = conn.execute(
            "SELECT trial_id, name, scope, step, count(*) FROM bench_metrics "
            "GROUP BY trial_id, name, scope, step HAVING count(*) > 1 LIMIT 5").fetchall()
        per_trial = dict(conn.execute(
            "SELECT trial_id, count(*) FROM bench_metrics GROUP BY trial_id").fetchall())
    assert dupes == []
    # same workload and budget: every trial stored the same number of points
    assert len(set(per_trial.values())) == 1, per_trial
    return trials


def test_sweep_via_address_uses_both_nodes_and_leaves_the_cluster_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    if cluster.worker_lost:
        pytest.skip("the worker node was killed by an earlier test of this module")
    db = tmp_path / "bench.db"
    spec = _write_spec(tmp_path, sweep_spec("two-node", seeds=1))
    proc = _bench_run(cluster, spec, db, tmp_path)
    out, err = _finish(proc, tmp_path, timeout=600)
    assert proc.returncode == 0, err
    # connected to this cluster (the GCS reports its address with the host's IP): 1 + 2 CPUs
    assert f":{cluster.head['gcs']}, 3 CPU, 0 GPU" in out, out
    assert "finished" in out
    trials = check_stored_once(db, "two-node", 4)
    assert (trials["attempt"] == 1).all()
    # The head has one CPU slot and a head trial only starts after the previous one stored
    # its result, so two trials running at once means the worker node ran trials too.
    assert _max_overlap(trials) >= 2
    # `bench run --address` leaves the external cluster running: both nodes still alive,
    # each with its own resources.
    nodes = cluster.nodes()
    alive = {n["NodeManagerPort"]: n["Resources"] for n in nodes if n["Alive"]}
    assert alive.keys() == {cluster.head["node_manager"], cluster.worker["node_manager"]}, nodes
    assert alive[cluster.head["node_manager"]]["CPU"] == 1
    assert alive[cluster.worker["node_manager"]]["CPU"] == 2
    assert alive[cluster.worker["node_manager"]]["worker_node"] == 2


def _raylet_pid(port: int) -> int:
    pids = [pid for pid in _pids_of([f"--node_manager_port={port}"])
            if Path(f"/proc/{pid}/exe").resolve().name == "raylet"]
    assert len(pids) == 1, pids
    return pids[0]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def _kill_node(raylet: int) -> None:
    """SIGKILL the node's raylet, then at once the processes it started (its Ray workers and
    agents), as when the machine is lost. Left alone they would exit by themselves within
    about a second, and a trial finishing in that second would never need a retry."""
    kids = _children(raylet)
    os.kill(raylet, signal.SIGKILL)
    for pid in kids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_killing_the_worker_nodes_raylet_mid_sweep_stores_every_trial_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = tmp_path / "bench.db"
    n_trials = 2 * 2 * 2
    spec = _write_spec(tmp_path, sweep_spec("node-loss", seeds=2, epochs=NODE_LOSS_EPOCHS))
    raylet = _raylet_pid(cluster.worker["node_manager"])
    proc = _bench_run(cluster, spec, db, tmp_path)
    try:
        # Half done and ≥ 2 running: at least one runs on the worker node (the head has a
        # single CPU slot), so the kill loses work that Ray has to retry on the head.
        _wait_for(lambda: (c := _counts(db)).get("completed", 0) >= n_trials // 2
                  and c.get("running", 0) >= 2, "half the trials done and 2 running")
        cluster.worker_lost = True
        _kill_node(raylet)
        out, err = _finish(proc, tmp_path, timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    trials = check_stored_once(db, "node-loss", n_trials, NODE_LOSS_EPOCHS)
    # The trials lost with the node (at most one per worker-node CPU) ran again on the head;
    # their new attempt replaced the lost one's points.
    retried = trials[trials["attempt"] > 1]
    assert 1 <= len(retried) <= 2 and (retried["attempt"] == 2).all(), \
        trials[["trial_id", "attempt"]]
    assert "finished" in out
    nodes = cluster.nodes()
    worker = [n for n in nodes if n["NodeManagerPort"] == cluster.worker["node_manager"]]
    assert len(worker) == 1 and not worker[0]["Alive"], nodes
    assert len([n for n in nodes if n["Alive"]]) == 1
