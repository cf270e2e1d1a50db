"""The deployment's topology for real, on four hosts made of network namespaces.

``db`` runs a fresh PostgreSQL cluster (initdb into a temp dir, as the ``postgres`` user);
``head`` runs the Ray head and the API through ``deploy/entrypoint.sh``'s ``head`` and
``api`` roles (the schema is made by its ``migrate`` role); ``w1`` and ``w2`` run Ray workers
through its ``worker`` role. Ray's token auth is on everywhere. The test process, in the root
namespace, is the client: it submits sweeps to the head's address, polls them to completion
and reads the results over HTTP and with ``bench results --db postgresql://<db host>/...``.

One topology serves every case (module scope); each fault case runs its own small sweep and
checks that every trial is stored exactly once, completed, with every metric point exactly
once. The faults: a worker host's processes killed, a worker host cut off the network,
PostgreSQL killed and restarted, the API restarted, each mid-sweep. Each case heals the
topology (the lost worker started again) for the next.

Everything started here is killed with its host's PID namespace, and the namespaces, links
and temp dir are removed, by the fixture's finalizer, whatever happened. Skips, with the
reason, where network namespaces cannot be made (not root) or PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _helpers import ROOT, cli_env
from _netns import Host, Network, Proc, netns_unavailable, wait_for

from bench_service.vocab import JOB_TERMINAL

pytestmark = pytest.mark.slow

ENTRYPOINT = str(ROOT / "deploy" / "entrypoint.sh")
RAY_PORT = 6380
DASHBOARD_PORT = 8265
API_PORT = 8000
PG_PORT = 5432
#: mlp_digits trials of ~1-5 s (on a loaded machine): longer than the metric streamer's first
#: flush (1 s), so their points travel to the writer while they run and a fault finds trials
#: running.
EPOCHS = 30
#: The API's one user's bearer token.
API_TOKEN = secrets.token_hex(16)


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for cand in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), reverse=True):
        return str(cand)
    return None


@dataclass
class Topology:
    net: Network
    db: Host
    head: Host
    workers: list[Host]
    env: dict[str, str]
    pg_data: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.db.ip}:{PG_PORT}/bench"

    @property
    def ray_address(self) -> str:
        return f"{self.head.ip}:{RAY_PORT}"

    def role_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        env.update(extra)
        return env

    # --- the hosts' services ------------------------------------------------------------
    def start_postgres(self) -> None:
        postgres = _pg_bin("postgres")
        assert postgres
        argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                postgres, "-D", str(self.pg_data), "-c", f"listen_addresses={self.db.ip}",
                "-c", f"port={PG_PORT}", "-c", f"unix_socket_directories={self.pg_data}",
                "-c", "fsync=off", "-c", "max_connections=200"]
        self.procs["postgres"] = self.db.start("postgres", argv, self.env)
        wait_for(lambda: _accepts(self.db.ip, PG_PORT) and _pg_ready(self), "PostgreSQL up",
                 timeout=60)

    def start_head(self) -> Proc:
        env = self.role_env(BENCH_NODE_IP=self.head.ip, RAY_NUM_CPUS="0",
                            BENCH_RAY_TEMP_DIR=str(self.head.home / "ray"))
        proc = self.head.start("head", [ENTRYPOINT, "head"], env)
        self.procs["head"] = proc
        return proc

    def boot_ray(self, tries: int = 3) -> None:
        """The head role, then the two workers' roles, until all three nodes are alive;
        started again (as a restart policy would) when the head exits on the way: on a
        loaded machine one of Ray's own processes may time out waiting for the raylet
        (``ray start --block`` then stops the node)."""
        for attempt in range(tries):
            head = self.start_head()
            wait_for(lambda h=head: not h.alive() or (self.healthy(self.head, "head")
                                                      and len(self.alive_nodes()) >= 1),
                     "Ray head healthy (entrypoint.sh health head)", timeout=180, every=1.0)
            if head.alive():
                for w in self.workers:
                    self.start_worker(w)
                wait_for(lambda h=head: not h.alive()
                         or all(self.started(w) for w in self.workers)
                         or not all(self.procs[w.name].alive() for w in self.workers),
                         "2 worker nodes started", timeout=300, every=1.0)
                if head.alive() and all(self.started(w) for w in self.workers):
                    self.wait_workers(2)
                    return
            self.events.append(f"Ray failed to start (try {attempt + 1}):\n{self.logs()}")
            for host in (self.head, *self.workers):
                host.kill()
                host.boot()
        raise AssertionError(f"the Ray cluster never came up:\n{self.logs()}")

    def worker_nodes(self) -> int:
        return sum(1 for node in self.alive_nodes() if node["cpu"] > 0)

    def start_api(self) -> float:
        """The api role on the head host; returns the seconds until it answered healthy."""
        env = self.role_env(BENCH_DB_URL=self.db_url, BENCH_API_TOKENS=f"alice={API_TOKEN}",
                            BENCH_RAY_DASHBOARD_URL=f"http://{self.head.ip}:{DASHBOARD_PORT}",
                            BENCH_API_HOST="0.0.0.0", BENCH_API_PORT=str(API_PORT))
        proc = self.head.start("api", [ENTRYPOINT, "api"], env)
        self.procs["api"] = proc
        took = wait_for(lambda: not proc.alive() or self.healthy(self.head, "api"),
                        "the API healthy (entrypoint.sh health api)", timeout=180, every=0.5)
        assert proc.alive(), proc.tail()
        return took

    def healthy(self, host: Host, role: str) -> bool:
        return host.run([ENTRYPOINT, "health", role], self.env, timeout=60).returncode == 0

    def start_worker(self, host: Host) -> None:
        env = self.role_env(BENCH_NODE_IP=host.ip, RAY_NUM_CPUS="1",
                            RAY_HEAD_ADDRESS=self.ray_address,
                            BENCH_RAY_TEMP_DIR=str(host.home / "ray"))
        (host.home / "worker.log").unlink(missing_ok=True)
        self.procs[host.name] = host.start("worker", [ENTRYPOINT, "worker"], env)

    def started(self, host: Host) -> bool:
        """``ray start`` on ``host`` finished its start-up (it prints this line)."""
        proc = self.procs[host.name]
        return proc.alive() and "Ray runtime started" in proc.tail(400)

    def heal(self, host: Host, tries: int = 3) -> None:
        """A lost worker host back: booted anew and its worker role started, again if
        ``ray start`` gives up during start-up (it does on a loaded machine), until the
        cluster has both workers."""
        for attempt in range(tries):
            host.kill()
            host.boot()
            self.start_worker(host)
            proc = self.procs[host.name]
            wait_for(lambda p=proc: not p.alive() or self.started(host), f"{host.name} up",
                     timeout=240, every=1.0)
            if proc.alive():
                self.wait_workers(2)
                return
            self.events.append(f"{host.name}: worker role exited during start-up "
                               f"(try {attempt + 1})")
        raise AssertionError(f"{host.name} never came back:\n{self.logs()}")

    def alive_nodes(self) -> list[dict[str, Any]]:
        """The cluster's alive nodes, from the head's state API (over HTTP, with the token)."""
        url = f"http://{self.head.ip}:{DASHBOARD_PORT}/api/v0/nodes?limit=100"
        req = urllib.request.Request(url, headers={
            "Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = json.load(resp)
        except (OSError, ValueError):
            return []
        nodes = body["data"]["result"]["result"]
        return [{"ip": n["node_ip"], "cpu": n.get("resources_total", {}).get("CPU", 0)}
                for n in nodes if n["state"] == "ALIVE"]

    def wait_workers(self, n: int, timeout: float = 120) -> None:
        wait_for(lambda: self.worker_nodes() == n,
                 f"{n} worker nodes alive", timeout=timeout, every=1.0)

    def logs(self) -> str:
        return "\n".join(f"--- {name} ({p.log}) ---\n{p.tail()}"
                         for name, p in self.procs.items())


def _accepts(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


def _pg_ready(topo: Topology) -> bool:
    import psycopg

    try:
        psycopg.connect(host=topo.db.ip, port=PG_PORT, user="postgres", dbname="postgres",
                        connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


def _sql(topo: Topology, query: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(host=topo.db.ip, port=PG_PORT, user="postgres", dbname="bench",
                         connect_timeout=5) as conn:
        return list(conn.execute(query, params).fetchall())


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    why = netns_unavailable()
    if why:
        pytest.skip(f"network namespaces unavailable: {why}")
    initdb = _pg_bin("initdb")
    if initdb is None or _pg_bin("postgres") is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no `postgres` user to run the PostgreSQL server as")
    if shutil.which("setpriv") is None:
        pytest.skip("the `setpriv` command is missing")
    # pytest runs finalizers on KeyboardInterrupt, not on SIGTERM: make them the same here,
    # so a killed test run still tears the hosts down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="bn", dir="/tmp"))  # unix sockets need short paths
    root.chmod(0o755)
    net = Network(root)
    try:
        db, head = net.add_host("db"), net.add_host("head")
        workers = [net.add_host("w1"), net.add_host("w2")]
        env = cli_env()
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update({
            "HOME": str(root),  # no ~/.ray/auth_token of this machine's user
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_OBJECT_STORE_BYTES": str(100 * 2**20),
            # A lost node is declared dead after 5 failed 1 s health checks (~5 s), not the
            # default 5 x 3 s (documented in deploy/README.md as a tuning knob).
            "RAY_health_check_initial_delay_ms": "0",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "5",
            # A peer cut off the network sends no RST: gRPC notices it by keepalive pings
            # (default every 5 min), and until then the trial it ran and the leases it held
            # hang. Ping every 2 s, give up after 4 s without an answer (deploy/README.md).
            "RAY_grpc_client_keepalive_time_ms": "2000",
            "RAY_grpc_client_keepalive_timeout_ms": "4000",
            "RAY_grpc_keepalive_time_ms": "2000",
            "RAY_grpc_keepalive_timeout_ms": "4000",
            # Patience for a loaded machine (CI shares 2 cores): Ray's agents and raylets
            # may take longer than the defaults to start.
            "RAY_agent_register_timeout_ms": "120000",
            "RAY_raylet_start_wait_time_s": "120",
        })
        pg_data = db.home / "pgdata"
        pg_data.mkdir()
        shutil.chown(pg_data, "postgres", "postgres")
        subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                        initdb, "-D", str(pg_data), "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        with (pg_data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net.prefix}.0/24 trust\n")
        t = Topology(net, db, head, workers, env, pg_data)
        t.start_postgres()
        import psycopg

        with psycopg.connect(host=db.ip, port=PG_PORT, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        migrated = head.run([ENTRYPOINT, "migrate"], t.role_env(BENCH_DB_URL=t.db_url))
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        t.boot_ray()
        t.start_api()
        yield t
        print("\n".join(t.events))
    finally:
        net.close()
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- sweeps ---------------------------------------------------------------------------------
def _spec(name: str, seeds: int = 1) -> dict[str, Any]:
    return {"name": name, "workloads": ["mlp_digits"], "optimizers": ["sgd", "adam"],
            "schedulers": ["constant", "cosine"], "seeds": list(range(seeds)),
            "budget": {"epochs": EPOCHS}, "resources": {"cpus_per_trial": 1, "max_retries": 3}}


@dataclass
class Sweep:
    name: str
    n_trials: int
    job_id: str = ""
    states: list[str] = field(default_factory=list)  # the job states the API reported


def _http(topo: Topology, method: str, path: str, body: Any = None,
          timeout: float = 30) -> tuple[int, Any]:
    """One request to the API on the head host, from this (the client) machine."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://{topo.head.ip}:{API_PORT}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _decode(resp.read(), resp.headers.get_content_type())
    except urllib.error.HTTPError as exc:
        return exc.code, _decode(exc.read(), exc.headers.get_content_type())


def _decode(body: bytes, ctype: str) -> Any:
    """JSON bodies decoded; anything else (the job's log is text/plain) as text."""
    if ctype.endswith("json") and body:
        return json.loads(body)
    return body.decode(errors="replace")


def _submit(topo: Topology, spec: dict[str, Any]) -> Sweep:
    """``POST /sweeps`` to the head's address: stored, then started as a Ray Job."""
    status, out = _http(topo, "POST", "/sweeps", spec)
    assert status == 201, (status, out)
    n = len(spec["optimizers"]) * len(spec["schedulers"]) * len(spec["seeds"])
    assert out["name"] == spec["name"] and out["n_trials"] == n and out["job_id"], out
    return Sweep(spec["name"], n, job_id=out["job_id"])


def _poll(topo: Topology, sweep: Sweep) -> str | None:
    """The job state ``GET /sweeps/{name}`` reports now; ``None`` while the API does not
    answer (restarting, or its database is)."""
    try:
        status, out = _http(topo, "GET", f"/sweeps/{sweep.name}", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    assert out["job_id"] == sweep.job_id, out  # the same Ray Job throughout
    if not sweep.states or sweep.states[-1] != out["state"]:
        sweep.states.append(out["state"])
    return str(out["state"])


def _wait_done(topo: Topology, sweep: Sweep, timeout: float = 240) -> float:
    """Poll the API until the sweep's job is over; it must have succeeded."""
    try:
        took = wait_for(lambda: _poll(topo, sweep) in JOB_TERMINAL,
                        f"sweep {sweep.name} finished", timeout=timeout, every=0.5)
    except AssertionError:
        logs = _http(topo, "GET", f"/sweeps/{sweep.name}/logs")[1] if _accepts(
            topo.head.ip, API_PORT) else ""
        raise AssertionError(f"{sweep.states}\n{logs}\n{topo.logs()}") from None
    assert sweep.states[-1] == "succeeded", sweep.states
    return took


def _counts(topo: Topology, sweep: Sweep) -> dict[str, int]:
    try:
        rows = _sql(topo, "SELECT t.status, count(*) FROM bench_trials t JOIN bench_sweeps s "
                          "ON s.id = t.sweep_id WHERE s.name = %s GROUP BY t.status", sweep.name)
    except Exception:  # the database may be down in a fault case
        return {}
    return {str(k): int(v) for k, v in rows}


def _mid_sweep(topo: Topology, sweep: Sweep) -> None:
    """Wait until some trials are done and both worker slots run one (streaming points)."""
    wait_for(lambda: (c := _counts(topo, sweep)).get("completed", 0) >= 1
             and c.get("running", 0) >= 2, f"{sweep.name}: mid-sweep", timeout=180,
             every=0.2)


def _check_stored_once(topo: Topology, sweep: Sweep) -> list[dict[str, Any]]:
    """Every trial stored once and completed, every metric point exactly once; read back
    with ``bench results --db postgresql://<db host>/bench`` from the client machine."""
    out = subprocess.run(
        [sys.executable, "-m", "bench_service.cli", "results", "--db", topo.db_url,
         "--sweep", sweep.name, "--format", "json"],
        env=cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    trials = json.loads(out.stdout)
    assert len(trials) == sweep.n_trials, trials
    assert {t["status"] for t in trials} == {"completed"}, trials
    assert len({t["trial_hash"] for t in trials}) == sweep.n_trials
    dupes = _sql(topo, "SELECT m.trial_id, m.name, m.scope, m.step, count(*) "
                       "FROM bench_metrics m JOIN bench_trials t ON t.id = m.trial_id "
                       "JOIN bench_sweeps s ON s.id = t.sweep_id WHERE s.name = %s "
                       "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1 LIMIT 5", sweep.name)
    assert dupes == [], dupes
    val = dict(_sql(topo, "SELECT m.trial_id, count(*) FROM bench_metrics m "
                          "JOIN bench_trials t ON t.id = m.trial_id JOIN bench_sweeps s "
                          "ON s.id = t.sweep_id WHERE s.name = %s AND m.name = 'val_loss' "
                          "AND m.scope = 'epoch' GROUP BY 1", sweep.name))
    assert len(val) == sweep.n_trials and set(val.values()) == {EPOCHS}, val
    # ... and over HTTP, the same trials
    status, page = _http(topo, "GET", f"/sweeps/{sweep.name}/trials?limit=1000")
    assert status == 200 and page["total"] == sweep.n_trials, page
    assert {t["trial_hash"] for t in page["items"]} == {t["trial_hash"] for t in trials}
    assert {t["status"] for t in page["items"]} == {"completed"}
    return list(trials)


def _attempts(topo: Topology, sweep: Sweep) -> dict[int, int]:
    rows = _sql(topo, "SELECT t.id, t.attempt FROM bench_trials t JOIN bench_sweeps s "
                      "ON s.id = t.sweep_id WHERE s.name = %s", sweep.name)
    return {int(i): int(a) for i, a in rows}


def _retried(topo: Topology, sweep: Sweep) -> int:
    return sum(1 for a in _attempts(topo, sweep).values() if a > 1)


# --- the cases ------------------------------------------------------------------------------
def _event(topo: Topology, text: str) -> None:
    topo.events.append(text)
    print(f"\n[topology] {text}", flush=True)


def test_a_sweep_submitted_over_http_runs_across_the_hosts(topo: Topology) -> None:
    sweep = _submit(topo, _spec("topo-plain"))
    took = _wait_done(topo, sweep)
    _check_stored_once(topo, sweep)
    hosts = {str(r[0]) for r in _sql(
        topo, "SELECT t.host FROM bench_trials t JOIN bench_sweeps s ON s.id = t.sweep_id "
              "WHERE s.name = %s", sweep.name)}
    assert hosts <= {"w1", "w2"}, hosts  # trials run on the worker hosts, never the head
    assert _retried(topo, sweep) == 0
    _event(topo, f"plain: {sweep.n_trials} trials in {took:.1f} s on hosts {sorted(hosts)}; "
                 f"job states {sweep.states}")


def test_a_worker_hosts_processes_killed_mid_sweep(topo: Topology) -> None:
    sweep = _submit(topo, _spec("topo-kill"))
    _mid_sweep(topo, sweep)
    victim = topo.workers[0]
    victim.kill()
    took = _wait_done(topo, sweep)
    _check_stored_once(topo, sweep)
    retried = _retried(topo, sweep)
    _event(topo, f"worker host {victim.name} killed: {retried} trial(s) retried on the other "
                 f"worker; sweep done {took:.1f} s after the kill")
    assert retried >= 1
    topo.heal(victim)


def test_a_worker_host_cut_off_mid_sweep(topo: Topology) -> None:
    sweep = _submit(topo, _spec("topo-cut"))
    _mid_sweep(topo, sweep)
    victim = topo.workers[1]
    victim.cut()
    try:
        took = _wait_done(topo, sweep)
        _check_stored_once(topo, sweep)
    finally:
        victim.reconnect()
    retried = _retried(topo, sweep)
    assert retried >= 1
    # The partitioned raylet learns it was declared dead once it can talk again, and exits;
    # nothing it still held reaches the database (checked again now that it could).
    gone = wait_for(lambda: not topo.procs[victim.name].alive(),
                    "the cut-off worker exits once reconnected", timeout=120)
    _check_stored_once(topo, sweep)
    _event(topo, f"worker host {victim.name} cut off: {retried} trial(s) retried; sweep done "
                 f"{took:.1f} s after the cut; its raylet exited {gone:.1f} s after the link "
                 "came back")
    topo.heal(victim)


def _job_log(topo: Topology, sweep: Sweep) -> str:
    """The sweep's Ray Job log, from the head's Jobs API (works while the database is down)."""
    req = urllib.request.Request(
        f"http://{topo.head.ip}:{DASHBOARD_PORT}/api/jobs/{sweep.job_id}/logs",
        headers={"Authorization": f"Bearer {topo.env['RAY_AUTH_TOKEN']}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.load(resp).get("logs", ""))
    except (OSError, ValueError):
        return ""


def test_postgres_restarted_mid_sweep(topo: Topology) -> None:
    sweep = _submit(topo, _spec("topo-pg"))
    _mid_sweep(topo, sweep)
    t0 = time.monotonic()
    topo.db.kill()  # a crash: every connection drops at once
    # Down until a writer of the job (the metric writer or the driver) has met the outage
    # and said it retries, or at most 20 s (the trials may all end first).
    with contextlib.suppress(AssertionError):
        wait_for(lambda: "retrying in" in _job_log(topo, sweep),
                 "a write of the job refused and retried", timeout=20, every=0.5)
    topo.db.boot()
    topo.start_postgres()
    down = time.monotonic() - t0
    # the API reconnects: it answers about the sweep again
    api_back = wait_for(lambda: _poll(topo, sweep) is not None, "the API answers again",
                        timeout=60)
    took = _wait_done(topo, sweep)
    _check_stored_once(topo, sweep)
    log = _job_log(topo, sweep)
    retries = log.count("retrying in")
    _event(topo, f"PostgreSQL killed, restarted after {down:.1f} s: the API answered again "
                 f"{api_back:.1f} s later; {retries} write(s) refused and retried by the job "
                 f"({_retried(topo, sweep)} trial(s) retried); sweep done {took:.1f} s after "
                 "the restart")


def test_the_api_restarted_mid_sweep(topo: Topology) -> None:
    sweep = _submit(topo, _spec("topo-api"))
    _mid_sweep(topo, sweep)
    topo.procs["api"].kill()
    wait_for(lambda: not _accepts(topo.head.ip, API_PORT), "the killed API's port closed",
             timeout=30)
    back = topo.start_api()
    state = _poll(topo, sweep)  # the new API reports the job, which went on meanwhile
    assert state in ("running", "succeeded"), sweep.states
    took = _wait_done(topo, sweep)
    _check_stored_once(topo, sweep)
    assert _retried(topo, sweep) == 0  # nothing was lost: the job never stopped
    _event(topo, f"API killed and restarted: healthy again in {back:.1f} s, reported the job "
                 f"as {state}; sweep done {took:.1f} s later; job states {sweep.states}")
