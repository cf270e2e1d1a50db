"""How much the trial runner costs over a bare, hand-written PyTorch loop.

Same work in one process: ``mlp_digits``, Adam, the same batches, epochs and per-epoch
validation; the bare loop records nothing. Prints both times and their ratio (target <= 1.10).

    python benchmarks/engine_overhead.py [--epochs 20] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_service.engine import TrialConfig, prepare_trial, run_trial


def bare_loop(cfg: TrialConfig) -> float:
    """The hand-written loop a practitioner would write for the same trial."""
    prep = prepare_trial(cfg)
    wl, dev = prep.workload, torch.device(cfg.device)
    data = wl.data()
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    xv, yv = data.x_val.to(dev), data.y_val.to(dev)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = wl.init_model(cfg.seed, prep.arch).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=prep.optimizer_params["lr"])
    gen = torch.Generator().manual_seed(cfg.seed)
    bs, n = prep.batch_size, data.n_train
    for _ in range(prep.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        for b in range(prep.steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            opt.zero_grad(set_to_none=True)
            loss = wl.loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        wl.evaluate(model, xv, yv)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def runner(cfg: TrialConfig) -> float:
    t0 = time.perf_counter()
    result = run_trial(cfg)
    assert result.status == "completed", result.error
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = as on Ray)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrialConfig.from_dict({
        "workload": "mlp_digits", "optimizer": "adam", "budget": {"epochs": args.epochs},
        "device": args.device, "seed": 0,
    })
    prep = prepare_trial(cfg)
    steps = prep.total_steps
    bare_loop(cfg), runner(cfg)  # warm-up: data cache, allocator, lazy imports
    bare, run = [], []
    for _ in range(args.repeats):  # interleaved so drift hits both equally
        bare.append(bare_loop(cfg))
        run.append(runner(cfg))
    b, r = statistics.median(bare), statistics.median(run)
    print(f"workload mlp_digits, adam, {args.epochs} epochs = {steps} steps, "
          f"device {args.device}, {args.threads} thread(s), median of {args.repeats}")
    print(f"bare loop : {b:.3f} s  ({steps / b:,.0f} steps/s)")
    print(f"run_trial : {r:.3f} s  ({steps / r:,.0f} steps/s)")
    print(f"ratio     : {r / b:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
