"""What orchestration and storage cost: `bench run` on Ray vs the bare engine, back to back.

Builds a grid of >= 200 short trials, runs it once with ``bench run`` (embedded local Ray,
2 workers, results in a fresh SQLite file, a real subprocess as a user would run it) and once
sequentially with ``run_trial`` in one process (no Ray, no SQL). Prints both wall times, their
ratio and the per-trial overhead. Target on 2 cores: sweep <= 0.65 x the sequential time.

    python benchmarks/sweep_overhead.py [--seeds 10] [--epochs 30] [--workers 2] [--repeats 3]
    python benchmarks/sweep_overhead.py --service   # submitted to a running `bench serve`

``--service`` times the same sweep submitted to a warm ``bench serve`` (embedded Ray head with
``--workers`` CPUs, already up): ``bench submit`` plus waiting until its Ray Job has ended,
against the same sequential time. Target on 2 workers: <= 0.55.

Trials of ~0.5 s (30 epochs of mlp_digits / logreg_digits). The "run phase" line excludes the
fixed cost of a run (interpreter, imports, starting an embedded Ray, shutting it down: ~6 s
on 2 cores; the workers' own torch imports, ~3.5 s, fall inside the run phase); "like for
like" also charges the bare loop the start-up it would have as a command of its own. This
VM's speed drifts by tens of percent between minutes, so sweeps and sequential runs are
interleaved, each repeat is printed, and the ratio is the median of the paired repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def make_spec(seeds: int, epochs: int) -> dict:
    return {
        "name": "overhead",
        "workloads": ["mlp_digits", "logreg_digits"],
        "optimizers": ["sgd", "momentum", "adam", "yogi", "rmsprop"],
        "schedulers": ["constant", "cosine"],
        "regularizers": ["none"],
        "seeds": list(range(seeds)),
        "budget": {"epochs": epochs},
    }


def sequential(spec: dict) -> tuple[float, int]:
    import torch

    from bench_service.engine import run_trial
    from bench_service.sweep import parse_spec, plan_sweep

    torch.set_num_threads(1)  # as each Ray worker does with cpus_per_trial: 1
    plan = plan_sweep(parse_spec(spec))
    run_trial(plan.trials[0].config)  # warm the data caches, as workers do on first use
    t0 = time.perf_counter()
    for t in plan.trials:
        r = run_trial(t.config)
        assert r.status in ("completed", "diverged"), r.error
    return time.perf_counter() - t0, len(plan.trials)


def bare_startup(spec: dict) -> float:
    """What the bare loop would add as a command of its own: interpreter, imports and the
    first trial's one-off costs (torch._dynamo import, data): a fresh process running the
    same trial twice, minus two warm trials."""
    code = (
        "import sys, time, json\n"
        "t0 = time.perf_counter()\n"
        "import torch\n"
        "from bench_service.engine import run_trial\n"
        "from bench_service.sweep import parse_spec, plan_sweep\n"
        "torch.set_num_threads(1)\n"
        "cfg = plan_sweep(parse_spec(json.loads(sys.argv[1]))).trials[0].config\n"
        "run_trial(cfg)\n"
        "t1 = time.perf_counter()\n"
        "run_trial(cfg)\n"
        "print(time.perf_counter() - t1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], check=True, env=env,
                         capture_output=True, text=True).stdout
    warm = float(out.split()[-1])  # one warm trial; the process ran two trials in all
    return max(0.0, time.perf_counter() - t0 - 2 * warm)


def swept(spec: dict, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "bench_service.cli", "run", str(spec_path),
             "--db", str(Path(tmp) / "bench.db"), "--num-cpus", str(workers), "--no-progress"],
            check=True, env=env, cwd=tmp, capture_output=True, text=True,
        ).stdout
        total = time.perf_counter() - t0
        run = float(re.search(r"finished in ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
        return total, run


class Service:
    """A warm ``bench serve`` (embedded head) on a fresh SQLite file."""

    def __init__(self, workers: int) -> None:
        import socket

        import httpx

        self.tmp = tempfile.TemporaryDirectory()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = open(Path(self.tmp.name) / "serve.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench_service.cli", "serve", "--db",
             str(Path(self.tmp.name) / "bench.db"), "--port", str(port), "--num-cpus",
             str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(1200):
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.25)
        raise RuntimeError("bench serve did not come up")

    def run(self, spec: dict, name: str) -> float:
        """``bench submit`` + wait until the job has ended: wall seconds."""
        import httpx

        spec_path = Path(self.tmp.name) / f"{name}.yaml"
        spec_path.write_text(yaml.safe_dump({**spec, "name": name}))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench_service.cli", "submit", str(spec_path),
                        "--api", self.url], check=True, env=env, capture_output=True)
        while True:
            state = httpx.get(f"{self.url}/sweeps/{name}", timeout=60).json()["state"]
            if state in ("succeeded", "failed", "cancelled"):
                assert state == "succeeded", state
                return time.perf_counter() - t0
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()
        self.tmp.cleanup()


def service_main(args: argparse.Namespace, spec: dict) -> None:
    service = Service(args.workers)
    try:
        seqs, subs = [], []
        for i in range(args.repeats):
            seq, n = sequential(spec)
            sub = service.run(spec, f"overhead-{i}")
            seqs.append(seq)
            subs.append(sub)
            print(f"  repeat {i + 1}: sequential {seq:6.1f} s, submitted to the service "
                  f"{sub:6.1f} s: ratio {sub / seq:.3f}", flush=True)
    finally:
        service.close()
    ratios = [b / a for a, b in zip(seqs, subs, strict=True)]
    print(f"{n} trials, {args.epochs} epochs each, median of {args.repeats}")
    print(f"sequential bare engine      : {statistics.median(seqs):7.1f} s")
    print(f"bench submit + wait, {args.workers} CPUs : {statistics.median(subs):7.1f} s  (warm "
          "bench serve, embedded Ray head)")
    print(f"ratio                       : {statistics.median(ratios):.3f}  (target <= 0.55; "
          f"range {min(ratios):.3f}-{max(ratios):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--service", action="store_true",
                    help="submit to a warm `bench serve` instead of `bench run`")
    args = ap.parse_args()
    spec = make_spec(args.seeds, args.epochs)
    if args.service:
        service_main(args, spec)
        return
    seqs, totals, runs, starts = [], [], [], []
    for i in range(args.repeats):  # interleaved: this VM's speed drifts by tens of percent
        seq, n = sequential(spec)
        total, run = swept(spec, args.workers)
        starts.append(bare_startup(spec))
        seqs.append(seq)
        totals.append(total)
        runs.append(run)
        print(f"  repeat {i + 1}: sequential {seq:6.1f} s, bench run {total:6.1f} s "
              f"(run phase {run:5.1f} s): ratio {total / seq:.3f}", flush=True)
    seq, sw, run = statistics.median(seqs), statistics.median(totals), statistics.median(runs)
    start = statistics.median(starts)
    # Each repeat pairs a sweep with a sequential run a minute apart: the median of those
    # paired ratios is steadier than a ratio of medians while the VM's speed drifts.
    ratios = [t / s for t, s in zip(totals, seqs, strict=True)]
    ratio = statistics.median(ratios)
    run_ratio = statistics.median(r / s for r, s in zip(runs, seqs, strict=True))
    like = statistics.median(t / (s + b) for t, s, b in zip(totals, seqs, starts, strict=True))
    print(f"{n} trials (mlp_digits, logreg_digits x 5 optimizers x 2 schedulers x {args.seeds} "
          f"seeds, {args.epochs} epochs each), median of {args.repeats}")
    print(f"sequential bare engine : {seq:7.1f} s  ({1000 * seq / n:.0f} ms/trial)")
    print(f"bench run, {args.workers} workers   : {sw:7.1f} s  (whole command: Ray start-up, "
          "planning, SQLite)")
    print(f"  of which run phase   : {run:7.1f} s  (first submit to last result)")
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    print(f"ratio                  : {ratio:.3f}  (target <= 0.65; median of the paired "
          f"repeats, range {spread}); run phase {run_ratio:.3f}")
    print(f"  like for like        : {like:.3f}  vs the bare loop as a command of "
          f"its own (+{start:.1f} s: interpreter, imports, first-trial warm-up)")
    ideal = seq / args.workers
    print(f"overhead per trial     : {1000 * (run - ideal) / n:.1f} ms in the run phase over "
          f"a perfect {args.workers}-way split ({ideal:.1f} s); fixed cost {sw - run:.1f} s")


if __name__ == "__main__":
    main()
