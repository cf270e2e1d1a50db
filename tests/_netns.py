"""Hosts made of Linux network namespaces, for tests of a real multi-host topology.

A ``Network`` is one bridge in the root namespace with an address of its own (the "client"
machine: the test process) and any number of ``Host``s, each a network namespace joined to
the bridge by a veth pair, with its own IP address, default route, loopback and port space,
and one PID namespace of its own (``unshare --pid --fork --kill-child``, /proc remounted)
that every process it runs joins (``nsenter``): they see only their host's processes, and
killing the namespace's init (what ``Host.kill`` does) makes the kernel kill everything
that host ran, however deep, as when a machine is lost. ``Host.cut``/``Host.reconnect``
take its link down and up (a partition). Each host's /etc/hosts names every host.

Everything is created with names unique to this process and torn down by ``Network.close``
(processes killed, namespaces and links deleted), which the tests call from fixture
finalizers. ``netns_unavailable()`` says why the topology cannot be built here (not root, no
``ip``/``unshare``, namespaces refused), for a skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def netns_unavailable() -> str | None:
    """Why hosts cannot be built here, or ``None`` when they can (probed for real)."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, bridge)"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is missing"
    probe = f"bnprobe{os.getpid()}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` is not permitted: {made.stderr.strip()}"
        ran = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--pid", "--fork",
                              "--mount-proc", "--kill-child", "true"],
                             capture_output=True, text=True, timeout=30, check=False)
        if ran.returncode != 0:
            return f"`unshare --pid --mount-proc` in a namespace failed: {ran.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Proc:
    """One process tree a host runs (its own PID namespace); output goes to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the tree: the namespace's init dies, so the kernel kills the rest."""
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


@dataclass
class Host:
    """A machine of the topology: one network namespace with one address, and one PID
    namespace (with its own /proc) that every process it runs shares, as on a real machine
    (a Ray driver finds its node's raylet among the host's processes)."""

    name: str
    netns: str
    ip: str
    link: str  # the root-side end of its veth pair
    home: Path
    procs: list[Proc] = field(default_factory=list)
    init: subprocess.Popen[bytes] | None = None
    init_pid: int = 0  # the PID namespace's init, as the root namespace sees it

    def boot(self) -> None:
        """Start the host's PID namespace (its init is a ``sleep``; its hostname its name):
        what ``kill`` ends."""
        self.init = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--pid", "--fork", "--uts",
             "--mount-proc", "--kill-child", "--", "sh", "-c",
             f"hostname {self.name} && exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        parent = self.init.pid
        wait_for(lambda: _child_of(parent) is not None, f"{self.name}: init started", 30,
                 every=0.02)
        self.init_pid = _child_of(parent) or 0

    def _enter(self, argv: Sequence[str]) -> list[str]:
        assert self.init_pid, f"host {self.name} is not booted"
        return ["nsenter", "-t", str(self.init_pid), "--pid", "--mount", "--net", "--uts", "--",
                *argv]

    def start(self, name: str, argv: Sequence[str], env: dict[str, str],
              cwd: Path | str | None = None) -> Proc:
        """Start ``argv`` on this host, logging to ``<home>/<name>.log``."""
        log = self.home / f"{name}.log"
        out: IO[bytes] = log.open("ab")
        try:
            popen = subprocess.Popen(
                self._enter(argv), env=env, cwd=cwd or self.home, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            out.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on this host to completion."""
        return subprocess.run(self._enter(argv), env=env, cwd=self.home, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        """Every process of this host killed at once, as when the machine is lost: its PID
        namespace's init dies, so the kernel kills all the rest. ``boot`` starts it anew."""
        if self.init is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.init.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                if self.init_pid:
                    os.kill(self.init_pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.init.wait(timeout=30)
            self.init, self.init_pid = None, 0
        for proc in self.procs:
            proc.kill()
        self.procs = []

    def cut(self) -> None:
        """Take the host's link down: it keeps running but reaches nobody (a partition)."""
        _ip("link", "set", self.link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.link, "up")


def _child_of(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


class Network:
    """A bridge with hosts on it; the root namespace is the client at ``.1``."""

    def __init__(self, root: Path, subnet: str = "10.213") -> None:
        tag = f"{os.getpid() % 100000:05d}"
        self.tag = tag
        self.root = root
        self.bridge = f"bnb{tag}"
        # A /24 unlikely to clash: the third octet from the pid.
        self.prefix = f"{subnet}.{os.getpid() % 250 + 1}"
        self.client_ip = f"{self.prefix}.1"
        self.hosts: dict[str, Host] = {}
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.client_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 10
        netns, link = f"bn{self.tag}-{name}", f"bn{self.tag}{index}"
        host = Host(name, netns, f"{self.prefix}.{index}", link, self.root / name)
        host.home.mkdir(parents=True, exist_ok=True)
        self.hosts[name] = host  # registered first: close() removes whatever was made
        # Its /etc/hosts names every host (`ip netns exec` bind-mounts /etc/netns/NS/*), and
        # no DNS server is configured: a lookup of a host name never waits on a resolver
        # this namespace cannot reach.
        etc = Path("/etc/netns") / netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("# no DNS on this test network\n")
        (etc / "hosts").write_text("")
        self._write_hosts()
        _ip("netns", "add", netns)
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", link, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        # A default route, as a real host has: Ray finds its own node's address by the
        # interface that routes outwards.
        _ip("-n", netns, "route", "add", "default", "via", self.client_ip)
        host.boot()
        return host

    def _write_hosts(self) -> None:
        """Every host's /etc/hosts, rewritten in place (the bind mounts keep the inode)."""
        lines = ["127.0.0.1 localhost", f"{self.client_ip} client"]
        lines += [f"{h.ip} {h.name}" for h in self.hosts.values()]
        for h in self.hosts.values():
            with (Path("/etc/netns") / h.netns / "hosts").open("r+") as fh:
                fh.truncate(0)
                fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        """Kill every host's processes, delete the namespaces, the links and the bridge."""
        for host in self.hosts.values():
            host.kill()
        for host in self.hosts.values():
            _ip("link", "del", host.link, check=False)
            _ip("netns", "del", host.netns, check=False)
            shutil.rmtree(Path("/etc/netns") / host.netns, ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)


def wait_for(pred: Callable[[], object], what: str, timeout: float = 120,
             every: float = 0.2) -> float:
    """Poll ``pred`` until it is truthy; returns the seconds it took, or fails naming
    ``what`` (hang guards, not deadlines: generous on a loaded machine)."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached in {timeout:g} s: {what}")
        time.sleep(every)
