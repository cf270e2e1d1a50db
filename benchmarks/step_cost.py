"""The cost of one optimizer step, per registered optimizer, relative to plain SGD.

For each workload (default: mlp_digits and char_lm) and each built-in optimizer, the model
is built from the workload, the optimizer from the registry (with its param groups, e.g.
Muon's split), and ``--steps`` updates are timed with the runner's own ``StepCost`` (only
``optimizer.step()``; forward and backward are not timed) after ``--warmup`` untimed ones
that allocate the state. A loaded machine makes single timings meaningless, so repeats are
interleaved (each repeat runs every optimizer once, in a rotated order) and the table
reports the median over repeats of each optimizer's mean step, its ratio to SGD's median,
and the optimizer's state bytes.

    python benchmarks/step_cost.py                      # both workloads, every optimizer
    python benchmarks/step_cost.py --workloads mlp_digits --optimizers sgd adamw muon
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from bench_service.engine.config import Component
from bench_service.engine.cost import StepCost, state_bytes
from bench_service.engine.errors import IncompatibleError
from bench_service.engine.optimizers import OPTIMIZERS, resolve_optimizer
from bench_service.engine.workloads import ArchOptions, build_workload


def _measure(workload: str, name: str, steps: int, warmup: int, batch: int) -> tuple[float, int]:
    """Mean seconds of ``optimizer.step()`` over ``steps`` updates, and the state bytes."""
    wl = build_workload(workload)
    data = wl.data()
    torch.manual_seed(0)
    model = wl.init_model(0, ArchOptions())
    params = [p for p in model.parameters() if p.requires_grad]
    entry = OPTIMIZERS.get(name)
    hp = resolve_optimizer(Component(name))
    groups = entry.param_groups(model) if entry.param_groups is not None else params
    opt = entry.factory(groups, hp)
    cost = StepCost(torch.device("cpu"))
    xb, yb = data.x_train[:batch], data.y_train[:batch]
    for i in range(warmup + steps):
        opt.zero_grad(set_to_none=True)
        wl.loss_fn(model(xb), yb).backward()
        if i < warmup:
            opt.step()
        else:
            cost.timed_step(opt)
    return statistics.fmean(cost.times), state_bytes(opt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["mlp_digits", "char_lm"])
    parser.add_argument("--optimizers", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    names = args.optimizers or OPTIMIZERS.builtin_names()
    if "sgd" not in names:
        names = ["sgd", *names]
    torch.set_num_threads(1)
    started = time.perf_counter()
    for workload in args.workloads:
        times: dict[str, list[float]] = {n: [] for n in names}
        states: dict[str, int] = {}
        refused: dict[str, str] = {}
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate: no fixed slot
            for name in order:
                if name in refused:
                    continue
                try:
                    t, s = _measure(workload, name, args.steps, args.warmup, args.batch)
                except IncompatibleError as exc:
                    refused[name] = exc.message
                    continue
                times[name].append(t)
                states[name] = s
        base = statistics.median(times["sgd"])
        print(f"\n{workload}: median of {args.repeats} interleaved repeats, {args.steps} timed "
              f"steps each (batch {args.batch}, 1 thread)")
        print("| optimizer | step (ms) | vs SGD | state (KiB) |")
        print("|---|---:|---:|---:|")
        for name in names:
            if name in refused:
                print(f"| {name} | refused | | |")
                continue
            med = statistics.median(times[name])
            print(f"| {name} | {1e3 * med:.3f} | {med / base:.2f}x | {states[name] / 1024:.1f} |")
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
