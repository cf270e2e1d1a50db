"""Synthetic sweeps with known effects, as trials frames and as real SQLite databases.

``grid_trials`` builds what ``Store.trials_frame`` returns for a grid whose objective is
``base + optimizer effect + scheduler effect + interaction + noise``; ``store_sweep`` writes
such a frame through the store (no Ray, no engine), so the CLI and the dashboard read it the
way they read a real sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench_service.store import NewTrial, Store

OPTIMIZERS = ("adam", "sgd", "momentum")
SCHEDULERS = ("constant", "cosine")
REGULARIZERS = ("none", "l2")


def grid_trials(
    *, workloads: Sequence[str] = ("w1", "w2"), optimizers: Sequence[str] = OPTIMIZERS,
    schedulers: Sequence[str] = SCHEDULERS, regularizers: Sequence[str] = REGULARIZERS,
    seeds: Sequence[int] = (0, 1, 2), opt_effect: Mapping[str, float] | None = None,
    sched_effect: Mapping[str, float] | None = None,
    interaction: Mapping[tuple[str, str], float] | None = None, noise: float = 0.05,
    base: float = 1.0, rng_seed: int = 0, workload_scale: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A grid sweep's trials frame with planted effects on ``final.val_loss``."""
    rng = np.random.default_rng(rng_seed)
    opt_effect = opt_effect or {}
    sched_effect = sched_effect or {}
    interaction = interaction or {}
    rows = []
    for w, o, s, r, seed in itertools.product(workloads, optimizers, schedulers, regularizers,
                                              seeds):
        scale = (workload_scale or {}).get(w, 1.0)
        v = scale * (base + opt_effect.get(o, 0.0) + sched_effect.get(s, 0.0)
                     + interaction.get((o, s), 0.0) + noise * rng.standard_normal())
        t = 10.0 * v
        rows.append(_row(w, o, s, r, seed, v, time_to_target=t, step_to_target=int(100 * v)))
    return pd.DataFrame(rows)


def _row(w: str, o: str, s: str, r: str, seed: int, value: float | None, *,
         status: str = "completed", role: str = "grid", number: int | None = None,
         lr: float = 0.01, time_to_target: float | None = None,
         step_to_target: int | None = None) -> dict[str, Any]:
    key = hashlib.sha256(f"{w}/{o}/{s}/{r}".encode()).hexdigest()
    final = {"val_loss": value} if value is not None else {}
    return {
        "trial_id": 0, "sweep": "synthetic", "trial_hash": f"{key}:{seed}:{role}:{number}",
        "cell_key": key, "workload": w, "optimizer": o, "scheduler": s, "regularizer": r,
        "seed": seed, "role": role, "number": number, "status": status,
        "time_to_target": time_to_target, "step_to_target": step_to_target,
        "final": final, "best": final, "objective": None,
        "params": {"optimizer": {"lr": lr}, "scheduler": {}, "regularizer": {}},
    }


def tuned_trials(n_tuning: int = 6, seeds: Sequence[int] = (1, 2), rng_seed: int = 0
                 ) -> pd.DataFrame:
    """A tuned sweep: per cell ``n_tuning`` tuning trials (value depends on log lr) and final
    runs of the best on ``seeds``."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for w, o in itertools.product(("w1", "w2"), ("adam", "sgd")):
        best_lr = 1e-3 if o == "adam" else 1e-1
        lrs = 10 ** rng.uniform(-4, 0, n_tuning)
        vals = [0.2 + 0.1 * (math.log10(lr) - math.log10(best_lr)) ** 2 for lr in lrs]
        for i, (lr, v) in enumerate(zip(lrs, vals, strict=True)):
            rows.append(_row(w, o, "constant", "none", 0, v, role="tuning", number=i, lr=lr))
        best = float(lrs[int(np.argmin(vals))])
        for seed in seeds:
            v = min(vals) + 0.01 * rng.standard_normal()
            rows.append(_row(w, o, "constant", "none", seed, v, role="final", lr=best))
    return pd.DataFrame(rows)


def store_sweep(url: str, frame: pd.DataFrame, name: str = "synthetic",
                spec: Mapping[str, Any] | None = None) -> None:
    """Write ``frame``'s trials as sweep ``name`` through the store (started and finished
    like the driver does; pending rows stay pending)."""
    new = [NewTrial(trial_hash=str(r["trial_hash"]), cell_key=str(r["cell_key"]),
                    workload=str(r["workload"]), optimizer=str(r["optimizer"]),
                    scheduler=str(r["scheduler"]), regularizer=str(r["regularizer"]),
                    seed=int(r["seed"]), config={"seed": int(r["seed"])},
                    params=dict(r["params"]), role=str(r["role"]),
                    number=None if r["number"] is None or pd.isna(r["number"])
                    else int(r["number"]))
           for r in frame.to_dict("records")]
    spec = dict(spec or {"name": name, "workloads": sorted(set(frame["workload"]))})
    with Store(url) as store:
        sweep = store.create_sweep(name, spec, hashlib.sha256(name.encode()).hexdigest(), new)
        infos = store.trials_to_run(sweep.id, statuses=("pending",))
        by_hash = {i.trial_hash: i.id for i in infos}
        for r in frame.to_dict("records"):
            if r["status"] in ("pending",):
                continue
            summary = {"status": r["status"], "final": r["final"], "best": r["best"],
                       "time_to_target": r["time_to_target"],
                       "step_to_target": r["step_to_target"]}
            store.finish_trial(by_hash[str(r["trial_hash"])], summary,
                               start={"host": "synthetic", "device": "cpu"})
        store.set_sweep_status(sweep.id, "completed")
