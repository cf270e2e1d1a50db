"""SIGTERM (``ray job stop``, Kubernetes, ``docker stop``) cancels a sweep as Ctrl-C does.

Real ``bench run`` processes, a real SIGTERM sent to the driver alone (as an orchestrator
signals a container's main process), then a resume that must finish what was left.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from _helpers import run_bench
from test_sweep_e2e import SLOW, SLOW_TRIALS, _counts, _kill_session, _start, _wait_for, write_spec

from bench_service.cluster import signals
from bench_service.store import Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)

TUNED = {
    "name": "tuned-term", "workloads": ["mlp_digits"], "optimizers": ["adam"],
    "schedulers": ["constant", "cosine"], "budget": {"epochs": 4},
    "tuning": {"trials_per_cell": 4, "sampler": "random", "pruner": "none",
               "final_seeds": [0, 1], "search_space": {}},
}


def _finished(db: Path) -> int:
    counts = _counts(db)
    return sum(counts.get(s, 0) for s in ("completed", "diverged", "pruned"))


@pytest.mark.parametrize("kind", ["grid", "tuned"])
def test_sigterm_cancels_cleanly_exits_143_and_the_sweep_resumes(kind: str, tmp_path: Path
                                                                  ) -> None:
    spec_dict = SLOW if kind == "grid" else TUNED
    db, spec = tmp_path / "bench.db", write_spec(tmp_path / f"{kind}.yaml", spec_dict)
    proc = _start(spec, db, tmp_path)
    try:
        _wait_for(lambda: _finished(db) >= 2, timeout=300)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill_session(proc)
    assert proc.returncode == signals.EXIT_TERMINATED == 143, err
    assert "cancelled" in out and "Traceback" not in err
    counts = _counts(db)
    assert counts.get("running", 0) == 0 and counts.get("pending", 0) == 0, counts
    sweep = Store(str(db)).get_sweep(spec_dict["name"])
    assert sweep is not None and sweep.status == "cancelled"

    again = run_bench("run", str(spec), "--db", str(db), "--num-cpus", "2", "--no-progress",
                      cwd=tmp_path, timeout=600, shared_ray=True)
    assert again.returncode == 0, again.stderr
    store = Store(str(db))
    sweep = store.get_sweep(spec_dict["name"])
    assert sweep is not None and sweep.status == "completed"
    trials = store.trials_frame(spec_dict["name"])
    if kind == "grid":
        assert len(trials) == SLOW_TRIALS and set(trials["status"]) == {"completed"}
    else:  # every cell's budget spent exactly, its finals run
        tuning = trials[(trials["role"] == "tuning") & (trials["status"] != "cancelled")]
        assert (tuning.groupby("cell_key").size() == 4).all()
        finals = trials[trials["role"] == "final"]
        assert (finals.groupby("cell_key").size() == 2).all()
        assert set(finals["status"]) == {"completed"}
