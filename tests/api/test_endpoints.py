"""Every read endpoint, auth, and bad input over HTTP, against real ``bench serve`` processes
(SQLite and PostgreSQL). Results are written straight into the server's database through the
store (what a finished sweep leaves there), so no Ray Job is needed here; jobs are in
``test_jobs.py``."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from _service import TOKENS, Server, auth, tiny_spec

from bench_service.engine.records import MetricPoint
from bench_service.store import NewTrial, Store

RESULTS = "seeded-results"
POINTS = 500


def seeded(server: Server) -> dict[str, Any]:
    """A finished 2-optimizer × 2-seed sweep with 500-point curves in the server's database
    (made once per server)."""
    if "seeded" in server.extra:
        return dict(server.extra["seeded"])
    store = Store(server.db)
    try:
        trials = [NewTrial(trial_hash=f"h{o}{s}", cell_key=f"c{o}", workload="quadratic",
                           optimizer=o, scheduler="constant", regularizer="none", seed=s,
                           config={"seed": s}, params={"optimizer": {"lr": 0.1}})
                  for o in ("sgd", "adam") for s in (0, 1)]
        spec = tiny_spec(RESULTS)
        sweep = store.create_sweep(RESULTS, spec, "hash-" + RESULTS, trials)
        ids = [t.id for t in store.trials_to_run(sweep.id)]
        for n, tid in enumerate(ids):
            store.start_trial(tid, host="h")
            points = [MetricPoint(name="val_loss", scope="epoch", step=i, epoch=i,
                                  wall_time=0.01 * i,
                                  value=math.nan if (n == 0 and i == 7) else 1.0 / (i + 1 + n))
                      for i in range(POINTS)]
            store.append_metrics(tid, points)
            store.finish_trial(tid, {"status": "completed", "final": {"val_loss": 0.1 + n},
                                     "best": {"val_loss": 0.05 + n}, "steps": POINTS,
                                     "epochs": POINTS, "wall_time": 1.0 + n})
        store.set_sweep_status(sweep.id, "completed")
    finally:
        store.close()
    server.extra["seeded"] = {"ids": ids}
    return dict(server.extra["seeded"])


def n_sweeps(server: Server) -> int:
    with server.client("root") as c:
        return int(c.get("/sweeps").json()["total"])


def is_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert set(body) == {"type", "title", "status", "detail", "instance", "errors"}, body
    assert body["status"] == status and body["detail"]
    return dict(body)


# ------------------------------------------------------------------------------ service


def test_health_and_openapi(server: Server) -> None:
    with server.client(None) as c:
        health = c.get("/health").json()
        assert health["status"] == "ok" and not health["ray_embedded"]
        schema = c.get("/openapi.json").json()
    assert "/sweeps/{name}/trials" in schema["paths"]
    assert "/trials/{trial_id}/metrics" in schema["paths"]


def test_registry_is_what_bench_list_shows(server: Server) -> None:
    from bench_service.engine import OPTIMIZERS

    with server.client() as c:
        reg = c.get("/registry").json()
    assert [e["name"] for e in reg["optimizers"]] == [e.name for e in OPTIMIZERS]
    assert {"optimizers", "schedulers", "regularizers", "workloads"} == set(reg)
    adam = next(e for e in reg["optimizers"] if e["name"] == "adam")
    assert "lr" in adam["params"]


# ------------------------------------------------------------------------------ auth


def test_reads_and_writes_need_a_valid_token(server: Server) -> None:
    with server.client(None) as c:
        is_problem(c.get("/sweeps"), 401)
        is_problem(c.post("/sweeps", json=tiny_spec("noauth")), 401)
        bad = c.post("/sweeps", json=tiny_spec("noauth"),
                     headers={"Authorization": "Bearer not-a-token"})
        is_problem(bad, 401)
        assert "invalid_token" in bad.headers["www-authenticate"]
        # a near miss (one character off) is refused too
        near = TOKENS["alice"][:-1] + "X"
        is_problem(c.get("/sweeps", headers={"Authorization": f"Bearer {near}"}), 401)
        assert c.get("/sweeps", headers=auth("bob")).status_code == 200  # plain-text entry
    assert "noauth" not in [s["name"] for s in server.client("root").get("/sweeps")
                            .json()["items"]]


def test_non_loopback_bind_without_tokens_is_refused(tmp_path: Any) -> None:
    from _helpers import run_bench

    proc = run_bench("serve", "--db", str(tmp_path / "x.db"), "--host", "0.0.0.0",
                     "--port", "8001", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to listen on 0.0.0.0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_an_unreachable_ray_address_is_one_line_and_creates_nothing(tmp_path: Any) -> None:
    from _helpers import free_port, run_bench

    proc = run_bench("serve", "--db", str(tmp_path / "x.db"), "--ray-address",
                     f"http://127.0.0.1:{free_port()}", "--port", str(free_port()),
                     cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the Ray job server" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_ray_token_auth_stays_on(ray_head: Any) -> None:
    """The job server refuses a request without Ray's token; the service sends it."""
    jobs = f"{ray_head.dashboard_url}/api/jobs/"
    assert httpx.get(jobs, timeout=30).status_code in (401, 403)
    token = ray_head.env["RAY_AUTH_TOKEN"]
    ok = httpx.get(jobs, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert ok.status_code == 200, ok.text


# ------------------------------------------------------------------------------ bad input


def test_oversized_body_is_413_counted_as_it_arrives(server: Server) -> None:
    before = n_sweeps(server)
    big = b"name: big\n" + b"#" * (2 << 20)
    with server.client() as c:
        is_problem(c.post("/sweeps", content=big,
                          headers={"Content-Type": "application/yaml"}), 413)

        def chunks() -> Any:  # chunked: no Content-Length to trust
            for _ in range(40):
                yield b"#" * 65536

        is_problem(c.post("/sweeps", content=chunks(),
                          headers={"Content-Type": "application/yaml"}), 413)
    assert n_sweeps(server) == before


@pytest.mark.parametrize(("body", "ctype", "field", "words"), [
    (b"name: [unclosed\n", "application/yaml", "spec", "line"),
    (b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
     b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
     "application/yaml", "spec", "alias"),
    (b'{"name": "x", "workloads": ', "application/json", "spec", "JSON"),
    (b"[" * 100_000, "application/json", "spec", "nested"),
], ids=["bad-yaml", "alias-bomb", "bad-json", "deep-json"])
def test_malformed_documents_are_422(server: Server, body: bytes, ctype: str, field: str,
                                     words: str) -> None:
    before = n_sweeps(server)
    with server.client() as c:
        problem = is_problem(c.post("/sweeps", content=body, headers={"Content-Type": ctype}),
                             422)
    assert problem["errors"][0]["field"] == field
    assert words.lower() in problem["detail"].lower(), problem
    assert n_sweeps(server) == before


def test_invalid_specs_name_the_field(server: Server) -> None:
    before = n_sweeps(server)
    with server.client() as c:
        unknown = is_problem(c.post("/sweeps", json=tiny_spec("bad-opt", optimizers=(
            "sgd", "adamm"))), 422)
        assert unknown["errors"][0]["field"].startswith("optimizers[1]"), unknown
        assert "adam" in unknown["detail"]
        path = is_problem(c.post("/sweeps", json=tiny_spec("bad-opt", optimizers=(
            "os.system",))), 422)
        assert path["errors"][0]["field"].startswith("optimizers[0]")
        huge = tiny_spec("huge", seeds=10_000, optimizers=tuple(["sgd", "adam"] * 1))
        huge["max_trials"] = 10**9
        huge["workloads"] = [{"name": "quadratic", "params": {"dim": d}} for d in range(2, 502)]
        grid = is_problem(c.post("/sweeps", json=huge), 422)
        assert grid["errors"][0]["field"] == "max_trials"
        assert "10,000,000 trials" in grid["detail"], grid
        is_problem(c.post("/sweeps", content=b"name: x", headers={"Content-Type": "image/png"}),
                   415)
        is_problem(c.post("/sweeps", json=[1, 2]), 422)
    assert n_sweeps(server) == before


def test_sql_looking_filters_are_clear_4xx(server: Server) -> None:
    seeded(server)
    with server.client() as c:
        for value in ("adam' OR '1'='1", "adam; DROP TABLE bench_trials; --", "\x00"):
            problem = is_problem(c.get(f"/sweeps/{RESULTS}/trials",
                                       params={"optimizer": value}), 422)
            assert problem["errors"][0]["field"] == "optimizer"
        is_problem(c.get(f"/sweeps/{RESULTS}/trials", params={"sort": "id; DROP"}), 422)
        is_problem(c.get(f"/sweeps/{RESULTS}/trials", params={"status": "done' --"}), 422)
        assert c.get(f"/sweeps/{RESULTS}/trials").json()["total"] == 4  # table intact


# ------------------------------------------------------------------------------ reads


def test_sweeps_list_and_one(server: Server) -> None:
    seeded(server)
    with server.client() as c:
        page = c.get("/sweeps", params={"limit": 1}).json()
        assert page["limit"] == 1 and len(page["items"]) == 1 and page["total"] >= 1
        one = c.get(f"/sweeps/{RESULTS}").json()
        assert one["done"] == 4 and one["counts"]["completed"] == 4 and one["spec"]
        is_problem(c.get("/sweeps/no-such-sweep"), 404)
        is_problem(c.get("/sweeps", params={"limit": 10_000}), 422)


def test_trials_page_filters_and_sorting(server: Server) -> None:
    ids = seeded(server)["ids"]
    with server.client() as c:
        page = c.get(f"/sweeps/{RESULTS}/trials",
                     params={"optimizer": "adam", "sort": "-final_val_loss", "limit": 1}).json()
        assert page["total"] == 2 and len(page["items"]) == 1
        top = page["items"][0]
        assert top["optimizer"] == "adam" and top["final_val_loss"] == 3.1
        both = c.get(f"/sweeps/{RESULTS}/trials", params={"seed": [0], "offset": 1}).json()
        assert both["total"] == 2 and len(both["items"]) == 1
        is_problem(c.get(f"/sweeps/{RESULTS}/trials", params={"limit": 1001}), 422)
        is_problem(c.get(f"/sweeps/{RESULTS}/trials", params={"optimizer": "adamm"}), 422)
        trial = c.get(f"/trials/{ids[0]}").json()
        assert trial["sweep"] == RESULTS and trial["final"] == {"val_loss": 0.1}
        is_problem(c.get("/trials/999999"), 404)
        is_problem(c.get("/trials/0"), 422)


def test_metrics_are_downsampled_in_the_database(server: Server) -> None:
    ids = seeded(server)["ids"]
    with server.client() as c:
        body = c.get(f"/trials/{ids[0]}/metrics",
                     params={"name": "val_loss", "max_points": 200}).json()
        full = c.get(f"/trials/{ids[0]}/metrics", params={"max_points": 100_000}).json()
        is_problem(c.get(f"/trials/{ids[0]}/metrics", params={"max_points": 1}), 422)
    (series,) = body["series"]
    assert series["points"] == POINTS
    assert 100 < len(series["step"]) <= 200
    assert series["step"][0] == 0 and series["step"][-1] == POINTS - 1
    assert series["step"] == sorted(series["step"])
    gaps = {b - a for a, b in zip(series["step"], series["step"][1:], strict=False)}
    assert max(gaps) <= 3  # evenly spaced (stride 3 for 500 -> 200)
    (whole,) = full["series"]
    assert len(whole["step"]) == POINTS and whole["value"][7] == "nan"


def test_best_is_bench_results_best(server: Server) -> None:
    seeded(server)
    from bench_service.sweep.best import best_table

    with server.client() as c:
        table = c.get(f"/sweeps/{RESULTS}/best").json()
        is_problem(c.get("/sweeps/nope/best"), 404)
    store = Store(server.db)
    try:
        expected = best_table(store, RESULTS)
    finally:
        store.close()
    assert table["columns"] == list(expected.columns)
    assert [r[table["columns"].index("optimizer")] for r in table["rows"]] == list(
        expected["optimizer"])


def test_logs_and_cancel_of_a_sweep_without_job(server: Server) -> None:
    seeded(server)
    with server.client("root") as c:
        is_problem(c.get(f"/sweeps/{RESULTS}/logs"), 404)
        is_problem(c.post(f"/sweeps/{RESULTS}/cancel"), 409)
        is_problem(c.post("/sweeps/nope/cancel"), 404)
    with server.client("bob") as c:  # stored by `bench run`: only an admin may touch it
        is_problem(c.post(f"/sweeps/{RESULTS}/cancel"), 403)
