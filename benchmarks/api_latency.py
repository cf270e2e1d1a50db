"""HTTP API latency on a big sweep: p50/p99 of a 100-trial page, a downsampled curve and
``/best``, with 1 and 32 concurrent clients, on SQLite and PostgreSQL.

A 10,000-trial × 50-point sweep (2,500 cells × 4 seeds, finished) is written straight into
the database, then the app of ``bench serve`` runs in a separate process (uvicorn, no Ray:
reads never touch it) and clients time real HTTP requests. Target: p99 < 100 ms with one
client, no errors with 32.

    python benchmarks/api_latency.py [--backends sqlite,postgresql] [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP = "latency"
TRIALS, POINTS, SEEDS = 10_000, 50, 4
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def build(url: str) -> list[int]:
    """The sweep, its trials finished, their curves: bulk statements, one transaction each."""
    from sqlalchemy import bindparam, insert, update

    from bench_service.store import NewTrial, Store
    from bench_service.store.store import METRICS
    from bench_service.store.store import TRIALS as T

    cells = TRIALS // SEEDS
    opts = ["sgd", "momentum", "adam", "adamw", "yogi"]
    new = [NewTrial(trial_hash=f"t{c}-{s}", cell_key=f"c{c}", workload="quadratic",
                    optimizer=opts[c % len(opts)], scheduler=f"s{c // len(opts) % 500}",
                    regularizer="none", seed=s, config={}, params={"optimizer": {"lr": 0.1}})
             for c in range(cells) for s in range(SEEDS)]
    spec = {"name": SWEEP, "workloads": ["quadratic"], "optimizers": opts,
            "objective": {"metric": "val_loss"}}
    store = Store(url)
    sweep = store.create_sweep(SWEEP, spec, "latency-hash", new)
    ids = [t.id for t in store.trials_to_run(sweep.id)]
    rng = random.Random(0)
    values = [{"tid": i, "v": rng.uniform(0.1, 2.0)} for i in ids]

    def finish(conn: object) -> None:
        stmt = update(T).where(T.c.id == bindparam("tid")).values(
            status="completed", final_val_loss=bindparam("v"), best_val_loss=bindparam("v"),
            steps=POINTS, epochs=POINTS, wall_time=1.0)
        conn.execute(stmt, values)  # type: ignore[attr-defined]
        rows = [{"trial_id": i, "name": "val_loss", "scope": "epoch", "step": p, "epoch": p,
                 "wall_time": 0.1 * p, "value": 1.0 / (p + 1)} for i in ids for p in range(POINTS)]
        for k in range(0, len(rows), 50_000):
            conn.execute(insert(METRICS), rows[k:k + 50_000])  # type: ignore[attr-defined]

    store._write(finish)
    # ``final`` JSON for the best table (it reads final/best dicts too)
    store._write(lambda conn: conn.execute(
        update(T).where(T.c.id == bindparam("tid")).values(final=bindparam("f")),
        [{"tid": v["tid"], "f": {"val_loss": v["v"]}} for v in values]))
    store.set_sweep_status(sweep.id, "completed")
    store.close()
    return ids


SERVE = """
import sys, uvicorn
from bench_service.api.app import ServiceConfig, create_app
from bench_service.api.auth import Tokens
from bench_service.api.jobs import JobRunner
from bench_service.store import Store
store = Store(sys.argv[1])
app = create_app(ServiceConfig(store=store, runner=JobRunner("http://127.0.0.1:9", store.url),
                               tokens=Tokens([])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def measure(base: str, ids: list[int], clients: int, per_client: int) -> dict[str, list[float]]:
    kinds = {
        "page": lambda r: f"/sweeps/{SWEEP}/trials?limit=100&sort=-final_val_loss"
                          f"&offset={r.randrange(0, TRIALS - 100)}",
        "curve": lambda r: f"/trials/{r.choice(ids)}/metrics?name=val_loss&max_points=25",
        "best": lambda r: f"/sweeps/{SWEEP}/best",
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    errors: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=120) as c:
            for _ in range(per_client):
                for kind, path in kinds.items():
                    t0 = time.perf_counter()
                    resp = c.get(path(rng))
                    dt = time.perf_counter() - t0
                    with lock:
                        times[kind].append(dt)
                        if resp.status_code != 200:
                            errors.append(f"{kind}: {resp.status_code}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times["errors"] = [float(len(errors))]
    return times


def pct(values: list[float], q: float) -> float:
    s = sorted(values) or [float("nan")]
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] * 1000


def run_backend(name: str, url: str, requests: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    t0 = time.perf_counter()
    ids = build(url)
    print(f"[{name}] built {TRIALS:,} trials x {POINTS} points in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, url, str(port)],
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        t1 = time.perf_counter()  # the first /best computes the table (cached after)
        assert httpx.get(f"{base}/sweeps/{SWEEP}/best", timeout=1800).status_code == 200
        print(f"[{name}] first /best (computed, then cached by the sweep's status counts): "
              f"{time.perf_counter() - t1:.1f} s", flush=True)
        measure(base, ids, 1, 3)  # warm-up
        for clients, per in ((1, requests), (32, max(2, requests // 32))):
            times = measure(base, ids, clients, per)
            errors = int(times.pop("errors")[0])
            cells = ", ".join(f"{k} p50 {pct(v, 0.5):.1f} ms p99 {pct(v, 0.99):.1f} ms"
                              for k, v in times.items())
            print(f"[{name}] {clients:>2} client(s), {sum(len(v) for v in times.values())} "
                  f"requests: {cells}; errors {errors}", flush=True)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--requests", type=int, default=200, help="per kind, one client")
    args = ap.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                run_backend("sqlite", f"sqlite:///{tmp}/latency.db", args.requests)
        else:
            from sqlalchemy import create_engine, text

            db = f"bench_latency_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{db}"'))
            try:
                run_backend("postgresql", PG_ADMIN.rsplit("/", 1)[0] + f"/{db}", args.requests)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                admin.dispose()
    print("done (on a shared, loaded machine the figures are upper bounds)")


if __name__ == "__main__":
    main()
