"""A per-trial request no node can hold is refused up front instead of waiting forever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import run_bench
from test_sweep_e2e import write_spec

from bench_service.cluster.session import (
    AUTOSCALING_ENV,
    RaySession,
    check_resources,
    ray_session,
)
from bench_service.engine.errors import ConfigError
from bench_service.store import Store

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)


@pytest.fixture(scope="module")
def session() -> Iterator[RaySession]:
    with ray_session(num_cpus=2, num_gpus=0) as s:
        yield s


@pytest.mark.parametrize(("cpus", "gpus", "field"), [
    (64, 0, "resources.cpus_per_trial"),
    (1, 1, "resources.gpus_per_trial"),
    (3, 0.5, "resources"),
])
def test_a_request_no_node_fits_is_refused_naming_the_field_and_the_biggest_node(
    session: RaySession, cpus: float, gpus: float, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_resources(session, cpus, gpus)
    assert info.value.field == field
    assert f"each trial asks for {cpus:g} CPU and {gpus:g} GPU" in str(info.value)
    assert "the biggest node has 2 CPU and 0 GPU" in str(info.value)


def test_a_request_that_fits_one_node_passes(session: RaySession) -> None:
    assert check_resources(session, 2, 0) is None
    assert check_resources(session, 0.5, 0) is None


def test_on_an_autoscaling_cluster_it_says_what_it_waits_for(
    session: RaySession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTOSCALING_ENV, "1")
    message = check_resources(session, 64, 1)
    assert message is not None and message.startswith("waiting for a node with 64 CPU and 1 GPU")


@pytest.mark.parametrize("tuned", [False, True])
def test_bench_run_refuses_with_exit_2_and_runs_nothing(tmp_path: Path, tuned: bool) -> None:
    spec = {"name": "big", "workloads": ["linreg"], "optimizers": ["sgd"],
            "budget": {"epochs": 1}, "resources": {"cpus_per_trial": 1, "gpus_per_trial": 64}}
    if tuned:
        spec["tuning"] = {"trials_per_cell": 2, "final_seeds": [0]}
    db = tmp_path / "bench.db"
    proc = run_bench("run", str(write_spec(tmp_path / "big.yaml", spec)), "--db", str(db),
                     "--num-cpus", "2", "--no-progress", cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "resources.gpus_per_trial: each trial asks for 1 CPU and 64 GPU" in errors[0]
    assert Store(str(db)).get_sweep("big") is None  # refused before anything ran: not kept
