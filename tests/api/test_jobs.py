"""Sweeps as Ray Jobs through a real ``bench serve``: submit → status → logs → results, resume,
conflicts, cancel (by the submitter, refused to another user), a killed API server whose
sweep goes on, and two users' sweeps at once. Tiny sweeps (quadratic, 1 epoch) on the
session's Ray head."""

from __future__ import annotations

import signal
from typing import Any

import pandas as pd
import pytest
from _service import TOKENS, Server, launch, sweep_state, tiny_spec, wait_for, wait_job

from bench_service import load_curves, load_trials
from bench_service.client import ApiError, Client

pytestmark = pytest.mark.slow


def submit(server: Server, spec: dict[str, Any], user: str = "alice") -> Any:
    with server.client(user) as c:
        return c.post("/sweeps", json=spec)


def test_submit_status_logs_results(sqlite_server: Server) -> None:
    server = sqlite_server
    client = Client(server.url, token=TOKENS["alice"])
    out = client.submit(tiny_spec("flow"))
    assert out["name"] == "flow" and out["job_id"] and not out["resumed"]
    assert out["state"] == "queued" and out["n_trials"] == 4
    final = client.wait("flow", timeout=300, progress=False)
    assert final["state"] == "succeeded" and final["status"] == "completed", final
    assert final["submitter"] == "alice" and final["done"] == 4
    assert final["job_started_at"] and final["job_finished_at"]
    log = client.logs("flow")
    assert "run --sweep flow" in log and "finished in" in log, log
    assert client.logs("flow", tail=1).count("\n") <= 1
    # the client's frames are load_trials / load_curves on the server's database
    pd.testing.assert_frame_equal(client.trials("flow"), load_trials("flow", db=server.db))
    pd.testing.assert_frame_equal(client.curves("flow", names=["val_loss"]),
                                  load_curves("flow", db=server.db, names=["val_loss"]))
    sgd = client.trials("flow", optimizer="sgd")
    assert set(sgd["optimizer"]) == {"sgd"} and len(sgd) == 2
    best = client.best("flow")
    assert sorted(best["optimizer"]) == ["adam", "sgd"]
    # re-submitting the same spec resumes it: nothing left, so the job ends at once
    again = submit(server, tiny_spec("flow"))
    assert again.status_code == 200 and again.json()["resumed"], again.text
    assert again.json()["job_id"] != out["job_id"]
    wait_job(server, "flow")
    # a different spec under the name is a 409 naming the change; bob may not resume it
    changed = submit(server, tiny_spec("flow", seeds=3))
    assert changed.status_code == 409 and "seeds" in changed.text, changed.text
    assert submit(server, tiny_spec("flow"), user="bob").status_code == 403
    client.close()


def test_two_users_at_once_cli_and_client(pg_server: Server, tmp_path: Any) -> None:
    """bob submits with the CLI (status, logs --follow, results/sweeps --api) while alice's
    sweep, submitted through the client, runs at the same time."""
    import os

    import yaml
    from _helpers import run_bench

    server = pg_server
    a = submit(server, tiny_spec("alice-sweep", seeds=1), user="alice")
    assert a.status_code == 201, a.text
    spec = tmp_path / "cli.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec("cli-flow", seeds=1, optimizers=("momentum",))))
    os.environ["BENCH_API_TOKEN"] = TOKENS["bob"]
    try:
        sub = run_bench("submit", str(spec), "--api", server.url)
        assert sub.returncode == 0, sub.stderr
        assert "cli-flow" in sub.stdout and "bench-cli-flow-" in sub.stdout
        logs = run_bench("logs", "cli-flow", "--follow", "--api", server.url)
        assert logs.returncode == 0 and "finished in" in logs.stdout, logs.stdout
        wait_job(server, "cli-flow")
        status = run_bench("status", "cli-flow", "--api", server.url)
        assert status.returncode == 0 and "succeeded" in status.stdout, status.stdout
        assert "submitter:" in status.stdout and "bob" in status.stdout
        res = run_bench("results", "--sweep", "cli-flow", "--api", server.url,
                        "--format", "csv")
        assert res.returncode == 0 and res.stdout.count("\n") == 2, res.stdout
        swp = run_bench("sweeps", "--api", server.url)
        assert swp.returncode == 0 and "cli-flow" in swp.stdout and "alice-sweep" in swp.stdout
        unknown = run_bench("status", "nope", "--api", server.url)
        assert unknown.returncode == 2 and "unknown sweep" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        os.environ.pop("BENCH_API_TOKEN", None)
    sa = wait_job(server, "alice-sweep")
    assert sa["submitter"] == "alice" and sa["done"] == 2
    with pytest.raises(ApiError) as err:
        Client(server.url, token=TOKENS["bob"]).submit(tiny_spec("alice-sweep", seeds=1))
    assert err.value.status == 403


def test_cancel_marks_trials_cancelled_and_only_the_submitter_may(sqlite_server: Server
                                                                   ) -> None:
    server = sqlite_server
    spec = tiny_spec("to-cancel", seeds=100, epochs=50)
    assert submit(server, spec).status_code == 201
    wait_for(lambda: sweep_state(server, "to-cancel")["state"] == "running",
             "the job to run", timeout=300)
    with server.client("bob") as c:
        refused = c.post("/sweeps/to-cancel/cancel")
    assert refused.status_code == 403 and "alice" in refused.json()["detail"]
    with server.client("alice") as c:
        resp = c.post("/sweeps/to-cancel/cancel")
    assert resp.status_code == 200, resp.text
    assert resp.json()["cancelled_trials"] > 0
    s = sweep_state(server, "to-cancel")
    assert s["state"] == "cancelled" and s["status"] == "cancelled"
    assert s["counts"]["running"] == 0 and s["counts"]["pending"] == 0
    assert s["counts"]["cancelled"] == resp.json()["cancelled_trials"]
    with server.client("alice") as c:
        assert c.post("/sweeps/to-cancel/cancel").status_code == 409  # nothing to cancel


def test_killed_api_server_the_sweep_goes_on(sqlite_server: Server, tmp_path: Any) -> None:
    """SIGKILL the API mid-sweep: the Ray Job keeps running; a restarted server (same
    database, same cluster) reports it, and its end."""
    from _helpers import free_port

    server = sqlite_server
    assert submit(server, tiny_spec("survivor", seeds=20, epochs=10)).status_code == 201
    wait_for(lambda: sweep_state(server, "survivor")["state"] == "running", "the job to run",
             timeout=300)
    server.stop(signal.SIGKILL)
    try:
        from bench_service.store import Store

        def progressed() -> bool:
            with Store(server.db) as store:
                s = store.get_sweep("survivor")
                return s is not None and sum(s.counts[k] for k in ("completed", "diverged")) > 0

        wait_for(progressed, "trials to finish while the API is down", timeout=300)
    finally:
        launch(server, port=free_port())
    s = wait_job(server, "survivor")
    assert s["done"] == 40 and s["status"] == "completed"
