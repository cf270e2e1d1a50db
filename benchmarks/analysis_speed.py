"""Time ``bench analyze`` and the dashboard's Analysis page on a 1,000-trial sweep.

Fills a SQLite database with a synthetic grid through the ``Store`` API (2 workloads × 8
optimizers × 7 schedulers × 3 regularizers × 3 seeds = 1,008 trials, planted optimizer and
schedule effects, a few diverged trials), then prints:

* ``analyze()`` in-process on the trials frame (every analysis, bootstrap included), warm;
* ``bench analyze --format json`` as a real process: wall time and its CPU time (the latter is
  what the machine's other load does not inflate);
* the Analysis page under Streamlit's AppTest, cold cache (query + analysis + figures).

The issue's target: under 2 s for both on a 1,000-trial sweep.

    python benchmarks/analysis_speed.py [--keep DB]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_service.store import NewTrial, Store

ROOT = Path(__file__).resolve().parents[1]


def fill(url: str) -> int:
    """The synthetic grid sweep ``speed`` (returns its trial count)."""
    rng = np.random.default_rng(0)
    axes = (("w1", "w2"), [f"opt{i}" for i in range(8)], [f"sched{i}" for i in range(7)],
            ("none", "l2", "dropout"), (0, 1, 2))
    rows = []
    for w, o, s, r, seed in itertools.product(*axes):
        key = hashlib.sha256(f"{w}/{o}/{s}/{r}".encode()).hexdigest()
        v = 1.0 + 0.1 * int(o[3:]) - 0.05 * int(s[5:]) + 0.05 * rng.standard_normal()
        if w == "w2":
            v *= 5
        rows.append((NewTrial(f"{key}:{seed}", key, w, o, s, r, seed, {"seed": seed},
                              {"optimizer": {"lr": 0.01}}), v))
    with Store(url) as store:
        sweep = store.create_sweep("speed", {"name": "speed"}, "0" * 64, [t for t, _ in rows])
        ids = {t.trial_hash: t.id for t in store.trials_to_run(sweep.id, statuses=("pending",))}
        for i, (t, v) in enumerate(rows):
            diverged = i % 97 == 0
            store.finish_trial(ids[t.trial_hash], {
                "status": "diverged" if diverged else "completed",
                "final": {} if diverged else {"val_loss": v},
                "time_to_target": None if diverged else 10 * v,
                "step_to_target": None if diverged else int(100 * v)},
                start={"host": "bench", "device": "cpu"})
        store.set_sweep_status(sweep.id, "completed")
    return len(rows)


def time_analyze(url: str) -> tuple[float, float, float]:
    """First call (imports included), then warm: wall and CPU seconds."""
    from bench_service.analysis import analyze

    with Store(url) as store:
        trials = store.trials_frame("speed")
    t0 = time.perf_counter()
    analyze(trials, sweep="speed")
    cold = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    analyze(trials, sweep="speed")
    return cold, time.perf_counter() - t0, time.process_time() - c0


def time_cli(url: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench_service.cli", "analyze", "--sweep", "speed",
                    "--db", url, "--format", "json"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_page(url: str) -> tuple[float, float]:
    """The Analysis page's run on a cold cache: wall and CPU seconds (AppTest runs the
    script in this process)."""
    from streamlit.testing.v1 import AppTest

    os.environ["BENCH_DB_URL"] = url
    at = AppTest.from_file(str(ROOT / "bench_service" / "dashboard" / "app.py"),
                           default_timeout=120)
    at.query_params["sweep"] = "speed"
    at.run()
    at.switch_page("views/analysis.py")
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()
    seconds = time.perf_counter() - t0, time.process_time() - c0
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="SQLite file to create and keep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or Path(tmp) / "speed.db")
        url = f"sqlite:///{path}"
        t0 = time.perf_counter()
        n = fill(url)
        print(f"filled {n} trials in {time.perf_counter() - t0:.1f} s")
        cold, warm, cpu = time_analyze(url)
        print(f"analyze() in-process: {warm:.2f} s wall, {cpu:.2f} s CPU warm "
              f"({cold:.2f} s wall first call, imports included)")
        wall, cpu = time_cli(url)
        print(f"bench analyze --format json: {wall:.2f} s wall, {cpu:.2f} s CPU "
              "(interpreter start and imports included)")
        page_wall, page_cpu = time_page(url)
        print(f"Analysis page (AppTest, cold cache): {page_wall:.2f} s wall, "
              f"{page_cpu:.2f} s CPU")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
