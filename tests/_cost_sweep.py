"""A sweep with step-cost data (sgd fast, muon slow but better per step), for leaderboards."""

from __future__ import annotations

from pathlib import Path

from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store

SPEC = {"axes": {"optimizer": ["sgd", "muon"]}, "budget": {"epochs": 4}}

#: optimizer -> (val_loss per epoch, seconds per epoch, step seconds, state bytes)
RUNS = {
    "sgd": ([1.0, 0.8, 0.6, 0.5], 1.0, 0.001, 0),
    "muon": ([0.9, 0.6, 0.3, 0.2], 2.0, 0.003, 4096),
}


def _trial(i: int, optimizer: str, seed: int) -> NewTrial:
    config = {"workload": {"name": "mlp_digits", "params": {}},
              "optimizer": {"name": optimizer, "params": {}}, "seed": seed}
    return NewTrial(trial_hash=f"h{i:063d}", cell_key=f"c-{optimizer}", workload="mlp_digits",
                    optimizer=optimizer, scheduler="constant", regularizer="none", seed=seed,
                    config=config, params={"optimizer": {}}, role="grid")


def cost_sweep(tmp_path: Path) -> Store:
    """A migrated SQLite store holding sweep ``cost``: 2 optimizers x 2 seeds, finished."""
    s = Store(f"sqlite:///{tmp_path / 'bench.db'}")
    trials = [_trial(i, opt, seed) for i, (opt, seed) in
              enumerate((o, s) for o in RUNS for s in range(2))]
    sweep = s.create_sweep("cost", SPEC, "f" * 64, trials)
    for t in s.trials_to_run(sweep.id):
        losses, per_epoch, step_s, state = RUNS[t.optimizer]
        points = [MetricPoint("val_loss", v + 0.01 * t.seed, 10 * (e + 1), e,
                              per_epoch * (e + 1), "epoch") for e, v in enumerate(losses)]
        s.finish_trial(t.id, {
            "status": "completed", "final": {"val_loss": points[-1].value}, "best": {},
            "steps": 40, "epochs": 4, "wall_time": per_epoch * 4,
            "step_time_mean": step_s * (1 + 0.1 * t.seed), "step_time_p90": 2 * step_s,
            "optimizer_state_bytes": state, "peak_memory_bytes": 10_000 + state,
        }, points, start={})
    return s
