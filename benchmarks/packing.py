"""Packed trials: trial-steps/s one at a time, with process packing, and packed K at once.

Measures, on the device it finds (CUDA if there is one, else CPU), the training throughput of
mlp_digits trials (the issue's probe: MLP 64-256-256-10, Adam, batch 128, every trial with
its own seed and learning rate) as whole trials (``run_trial`` / ``run_packed``, evaluation
and records included), in trial-steps per second:

* one at a time: trials run one after another in this process;
* process packing: ``--procs`` processes each running trials one at a time (what Ray's
  fractional GPUs give);
* packed K: ``run_packed`` of K trials for K in ``--ks``;

then the whole ``bench run`` of a ``--sweep-trials`` mlp_digits sweep packed
(``execution: {pack: auto}`` on CUDA, ``pack: K`` on CPU) and unpacked (fractional GPUs:
``gpus_per_trial: 1/--procs``), wall clock of the command each.

    python benchmarks/packing.py                                   # GPU: the issue's figures
    python benchmarks/packing.py --steps 30 --ks 1 8 64 --procs 2 --sweep-trials 32  # 2 CPUs

Targets on an H100/H200 (issue 15): packed K=512 >= 100x one at a time and >= 10x process
packing; the packed sweep >= 20x faster than the unpacked one. On 2 CPU cores packing loses.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from bench_service.engine.packed import run_packed
from bench_service.engine.runner import run_trial, warm_up

HIDDEN = 256
BATCH = 128


def config(i: int, steps: int, device: str) -> dict[str, Any]:
    """Trial ``i``: its own seed and learning rate (log-spaced over 1e-4..1e-2)."""
    lr = 10 ** (-4 + 2 * ((i * 0.618034) % 1.0))
    return {
        "workload": {"name": "mlp_digits", "params": {"hidden": HIDDEN}},
        "optimizer": {"name": "adam", "params": {"lr": lr}},
        "seed": i, "batch_size": BATCH, "budget": {"steps": steps}, "device": device,
        "log_every": 10,
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_at_a_time(n: int, steps: int, device: str) -> float:
    run_trial(config(10_000, steps, device))  # warm: data cached, kernels loaded
    sync(device)
    t = time.perf_counter()
    for i in range(n):
        r = run_trial(config(i, steps, device))
        assert r.status in ("completed", "diverged"), r.error
    sync(device)
    return n * steps / (time.perf_counter() - t)


def _worker(args: tuple[int, int, int, str]) -> float:
    first, n, steps, device = args
    torch.set_num_threads(1)
    warm_up()
    run_trial(config(10_000 + first, steps, device))
    t = time.perf_counter()
    for i in range(first, first + n):
        run_trial(config(i, steps, device))
    sync(device)
    return time.perf_counter() - t


def process_packing(procs: int, per_proc: int, steps: int, device: str) -> float:
    ctx = mp.get_context("spawn")
    t = time.perf_counter()
    with ctx.Pool(procs) as pool:
        pool.map(_worker, [(p * per_proc, per_proc, steps, device) for p in range(procs)])
    # Wall time of the whole pool (process start-up included, as a sweep pays it once).
    return procs * per_proc * steps / (time.perf_counter() - t)


def packed(k: int, steps: int, device: str) -> float:
    run_packed([config(20_000 + i, steps, device) for i in range(min(k, 8))])  # warm
    sync(device)
    t = time.perf_counter()
    results = run_packed([config(i, steps, device) for i in range(k)],
                         masks_per_member=not device.startswith("cuda"))
    sync(device)
    assert all(r.extra.get("pack", {}).get("members") == k for r in results)
    return k * steps / (time.perf_counter() - t)


def sweep_spec(trials: int, epochs: int, device: str, pack: Any, gpus: float) -> dict[str, Any]:
    seeds = max(1, trials // 16)
    lrs = [10 ** (-4 + 2 * i / 15) for i in range(16)]
    spec: dict[str, Any] = {
        "name": "packbench",
        "workloads": [{"name": "mlp_digits", "params": {"hidden": HIDDEN}}],
        "optimizers": [{"name": "adam", "params": {"lr": lr}} for lr in lrs],
        "seeds": list(range(seeds)), "batch_size": BATCH, "budget": {"epochs": epochs},
        "device": device, "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus},
    }
    if pack is not None:
        spec["execution"] = {"pack": pack}
    return spec


def bench_run(spec: dict[str, Any], num_cpus: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        cmd = [sys.executable, "-m", "bench_service.cli", "run", str(path), "--db",
               f"sqlite:///{tmp}/bench.db", "--num-cpus", str(num_cpus), "--no-progress"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"bench run failed: {proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=200, help="steps per trial")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 8, 64, 512])
    ap.add_argument("--one", type=int, default=4, help="trials timed one at a time")
    ap.add_argument("--procs", type=int, default=16 if torch.cuda.is_available() else
                    (os.cpu_count() or 2))
    ap.add_argument("--per-proc", type=int, default=4, help="trials per process")
    ap.add_argument("--sweep-trials", type=int, default=512)
    ap.add_argument("--sweep-epochs", type=int, default=3)
    ap.add_argument("--sweep-pack", type=int, default=64,
                    help="pack size of the packed sweep on CPU (CUDA uses auto)")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--only-sweep", action="store_true", help="skip the trial-steps/s part")
    args = ap.parse_args()
    dev = args.device
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else f"cpu x{os.cpu_count()}"
    print(f"device {dev} ({name}), torch {torch.__version__}, mlp_digits hidden {HIDDEN}, "
          f"adam, batch {BATCH}, {args.steps} steps per trial")
    if not args.only_sweep:
        throughput(args, dev)
    if not args.skip_sweep:
        whole_sweep(args, dev)


def throughput(args: argparse.Namespace, dev: str) -> None:
    base = one_at_a_time(args.one, args.steps, dev)
    print(f"one at a time:            {base:10.0f} trial-steps/s")
    procs = process_packing(args.procs, args.per_proc, args.steps, dev)
    print(f"process packing ({args.procs:3d} procs): {procs:10.0f} trial-steps/s  "
          f"{procs / base:6.1f}x one at a time")
    for k in args.ks:
        r = packed(k, args.steps, dev)
        print(f"packed K={k:<4d}              {r:10.0f} trial-steps/s  {r / base:6.1f}x one at "
              f"a time, {r / procs:6.2f}x process packing")


def whole_sweep(args: argparse.Namespace, dev: str) -> None:
    gpus = dev.startswith("cuda")
    num_cpus = os.cpu_count() or 2
    unpacked_gpus = 1.0 / args.procs if gpus else 0.0
    t_un = bench_run(sweep_spec(args.sweep_trials, args.sweep_epochs, dev, None, unpacked_gpus),
                     num_cpus)
    t_pk = bench_run(sweep_spec(args.sweep_trials, args.sweep_epochs, dev,
                                "auto" if gpus else args.sweep_pack, 1.0 if gpus else 0.0),
                     num_cpus)
    n = 16 * max(1, args.sweep_trials // 16)
    print(f"bench run, {n} trials x {args.sweep_epochs} epochs: unpacked {t_un:.1f} s, "
          f"packed {t_pk:.1f} s ({t_un / t_pk:.2f}x)")


if __name__ == "__main__":
    main()
