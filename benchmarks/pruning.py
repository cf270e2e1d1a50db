"""Does pruning save work? The same tuned sweep with and without the median pruner.

Equal ``trials_per_cell`` in both runs; prints, per pruner, the compute spent on tuning
(trial-seconds and optimizer steps), how many trials were pruned, and the best objective each
cell reached (its final-seed mean), and whether each tuning trial's stored objective is the
value its Optuna study holds. Runs ``bench run`` twice into one temporary SQLite file.

    python benchmarks/pruning.py [--trials 16] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def spec(name: str, pruner: str, trials: int, epochs: int) -> dict:
    return {
        "name": name,
        "workloads": ["mlp_digits"],
        "optimizers": ["sgd", "adam"],
        "schedulers": ["constant"],
        "budget": {"epochs": epochs},
        "tuning": {"trials_per_cell": trials, "sampler": "tpe", "pruner": pruner,
                   "final_seeds": [0, 1, 2]},
    }


def agreement(store: Any, db: str, name: str) -> tuple[int, int]:
    """How many tuning trials' stored objective equals the value their Optuna study holds
    (a pruned trial's: its last intermediate value)."""
    import math

    import optuna

    def same(a: Any, b: Any) -> bool:
        a = None if a is None or not math.isfinite(a) else float(a)
        b = None if b is None or not math.isfinite(b) else float(b)
        return a == b

    rows = store.trials_frame(name, role="tuning")
    agree = 0
    for cell in store.cells_frame(name).itertuples():
        trials = {t.number: t for t in optuna.load_study(study_name=cell.study_name,
                                                         storage=db).trials}
        for r in rows[rows["cell_key"] == cell.cell_key].itertuples():
            agree += same(r.objective, trials[int(r.number)].value)
    return agree, len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    from bench_service.store import Store
    from bench_service.sweep.best import best_table

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for pruner in ("none", "median"):
            path = Path(tmp) / f"{pruner}.yaml"
            path.write_text(yaml.safe_dump(spec(f"prune-{pruner}", pruner, args.trials,
                                                args.epochs)))
            subprocess.run([sys.executable, "-m", "bench_service.cli", "run", str(path),
                            "--db", db, "--no-progress"], check=True, env=env,
                           stdout=subprocess.DEVNULL)
        store = Store(db)
        print(f"mlp_digits x [sgd, adam] x constant, {args.trials} TPE trials per cell, "
              f"{args.epochs} epochs, 3 final seeds")
        print(f"{'pruner':<8} {'trial-s':>8} {'steps':>8} {'pruned':>7}   best final val_loss")
        for pruner in ("none", "median"):
            name = f"prune-{pruner}"
            t = store.trials_frame(name, role="tuning")
            best = best_table(store, name)
            per_cell = ", ".join(f"{r.optimizer} {r.mean:.4f}" for r in best.itertuples())
            print(f"{pruner:<8} {t['wall_time'].sum():8.1f} {int(t['steps'].sum()):8d} "
                  f"{int((t['status'] == 'pruned').sum()):7d}   {per_cell}")
        agree, total = agreement(store, db, "prune-median")
        print(f"stored objective == Optuna's value: {agree}/{total} tuning trials of the "
              "median-pruned sweep")


if __name__ == "__main__":
    main()
