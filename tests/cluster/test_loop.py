"""The one driver loop: a bounded submission window, capacity from every resource, tuned
sweeps as a source (grid sampler, pruned trials, GPU slots), no-op resumes without Ray."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from bench_service.cluster.driver import execute_sweep
from bench_service.cluster.grid import GridSource, jobs_of, register_sweep
from bench_service.cluster.loop import Job, TaskResources, run_loop, submission_window
from bench_service.cluster.session import ray_session
from bench_service.cluster.sweep_runner import slots
from bench_service.cluster.tuning import tuning_concurrency
from bench_service.store import Store
from bench_service.sweep import parse_spec, plan_sweep
from bench_service.sweep import tuning as T
from bench_service.sweep.spec import TuningSpec

pytestmark = pytest.mark.slow  # real Ray, `bench run` processes: handed out first (conftest.py)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # One GPU that Ray schedules by (no hardware needed): a trial asking for it holds it.
    with ray_session(num_cpus=2, num_gpus=1):
        yield


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bench.db'}"


class _Watched(GridSource):
    """A grid source that records how many of its jobs were out at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = self.most_out = 0

    def next_jobs(self, free: int) -> list[Job]:
        jobs = super().next_jobs(free)
        self.out += len(jobs)
        self.most_out = max(self.most_out, self.out)
        return jobs

    def on_done(self, job: Job, status: str, lost: bool) -> bool:
        self.out -= 1
        return super().on_done(job, status, lost)


def test_the_loop_keeps_a_bounded_window_of_trials_submitted(
    local_ray: None, tmp_path: Path
) -> None:
    n = 24
    plan = plan_sweep(parse_spec({"name": "window", "workloads": ["quadratic"],
                                  "optimizers": ["sgd"], "seeds": list(range(n)),
                                  "budget": {"epochs": 1}}))
    store = Store(_url(tmp_path))
    sweep, _ = register_sweep(plan, store)
    source = _Watched(jobs_of(store.trials_to_run(sweep.id)), total=n, store=store,
                      sweep_id=sweep.id)

    outcome = run_loop(source, store, TaskResources(1.0, 0.0, 0), capacity=2, progress=False)

    assert outcome.cancelled is None and outcome.counts["completed"] == n
    assert source.most_out == submission_window(2) < n  # never the whole grid at once
    assert store.status_counts(sweep.id)["completed"] == n
    store.close()


def test_capacity_counts_every_resource_a_trial_requests() -> None:
    cluster = {"CPU": 16.0, "GPU": 1.0}
    assert slots(cluster, 1.0, 1.0) == 1  # one GPU: one trial at a time, whatever the CPUs
    assert slots(cluster, 1.0, 0.5) == 2
    assert slots(cluster, 4.0, 0.0) == 4
    assert tuning_concurrency(TuningSpec(trials_per_cell=8), slots(cluster, 1.0, 1.0)) == 1
    assert tuning_concurrency(TuningSpec(trials_per_cell=8, max_concurrent=3), 1) == 3


def _tuned(name: str, tuning: dict[str, Any], **spec: Any) -> Any:
    return plan_sweep(parse_spec({
        "name": name, "workloads": ["quadratic"], "optimizers": ["sgd"],
        "budget": {"epochs": 3}, "tuning": {"sampler": "random", "final_seeds": [0],
                                            **tuning}, **spec,
    }))


def _run(plan: Any, url: str) -> tuple[int, str]:
    out = io.StringIO()
    store = Store(url)
    try:
        code = execute_sweep(plan, store, progress=False, out=out)
    finally:
        store.close()
    return code, out.getvalue()


def _studies(url: str, name: str) -> list[optuna.Study]:
    store = Store(url)
    names = list(store.cells_frame(name)["study_name"])
    store.close()
    return [optuna.load_study(study_name=n, storage=url) for n in names]


def test_one_gpu_runs_one_tuning_trial_at_a_time(local_ray: None, tmp_path: Path) -> None:
    """A trial asked of Optuna while the only GPU is busy would be sampled knowing less:
    with ``gpus_per_trial: 1`` on one GPU, no two trials of a study overlap."""
    url = _url(tmp_path)
    plan = _tuned("gpu", {"trials_per_cell": 4}, resources={"gpus_per_trial": 1})

    code, out = _run(plan, url)

    assert code == 0, out
    (study,) = _studies(url, "gpu")
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert len(spans) == 4
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and start is not None and end <= start, spans


def test_grid_sampler_runs_ask_and_tell_also_with_nothing_to_tune(
    local_ray: None, tmp_path: Path
) -> None:
    # Optuna's GridSampler calls study.stop() once its grid is used up, which raises outside
    # study.optimize; a cell whose every parameter is fixed has a grid of one point.
    url = _url(tmp_path)
    plan = _tuned("grid", {"trials_per_cell": 3, "sampler": "grid"},
                  optimizers=["sgd", {"name": "sgd", "params": {"lr": 0.05}}])
    assert sorted(len(c.search_space) for c in plan.cells) == [0, 1]

    code, out = _run(plan, url)

    assert code == 0, out
    studies = _studies(url, "grid")
    assert len(studies) == 2
    for study in studies:
        assert T.budget_used(study) == 3
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
    fixed = next(s for s in studies if not s.trials[0].params)
    assert len({t.value for t in fixed.trials}) == 1  # the one config, three times
    store = Store(url)
    finals = store.trials_frame("grid", role="final")
    assert len(finals) == 2 and set(finals["status"]) == {"completed"}
    store.close()


def test_the_stored_objective_of_every_tuning_trial_is_optunas_value(
    local_ray: None, tmp_path: Path
) -> None:
    """A pruned trial's value in Optuna is its last intermediate value; the trial stops at
    the epoch it last reported, so its row, its curve and its cost all end there too."""
    url = _url(tmp_path)
    plan = _tuned("pruned", {"trials_per_cell": 10, "pruner": "median", "max_concurrent": 1,
                             "search_space": {"sgd": {"lr": {"low": 1e-4, "high": 0.5,
                                                             "log": True}}}},
                  budget={"epochs": 8})

    code, out = _run(plan, url)

    assert code == 0, out
    (study,) = _studies(url, "pruned")
    store = Store(url)
    rows = store.trials_frame("pruned", role="tuning").set_index("number")
    curves = store.curves_frame("pruned", names=["val_loss"], scope="epoch", role="tuning")
    by_number = {t.number: t for t in study.trials}
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned: the test proves nothing"
    for number, row in rows.iterrows():
        trial = by_number[int(number)]
        value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
        stored = None if row["objective"] is None or math.isnan(row["objective"]) \
            else float(row["objective"])
        assert stored == value, (number, row["status"], stored, trial.state, trial.value)
    for trial in pruned:
        row = rows.loc[trial.number]
        curve = curves[curves["trial_id"] == row["trial_id"]].sort_values("epoch")
        assert row["status"] == "pruned"
        assert trial.last_step is not None
        assert trial.value == trial.intermediate_values[trial.last_step]
        assert int(curve["epoch"].iloc[-1]) == trial.last_step == int(row["epochs"]) - 1
        assert float(curve["value"].iloc[-1]) == trial.value
        assert int(row["steps"]) == int(curve["step"].iloc[-1])  # what it really ran
    cell = store.cells_frame("pruned").iloc[0]
    assert cell["n_tuning"] == 10 and cell["n_pruned"] == len(pruned)
    assert cell["tuning_cpu_seconds"] == pytest.approx(float(rows["wall_time"].sum()))
    store.close()


def test_a_finished_tuned_sweep_resumes_without_starting_ray(
    local_ray: None, tmp_path: Path
) -> None:
    url = _url(tmp_path)
    plan = _tuned("noop", {"trials_per_cell": 2})
    assert _run(plan, url)[0] == 0

    code, out = _run(plan, url)

    assert code == 0, out
    assert "nothing to run" in out and "ray:" not in out
    store = Store(url)
    sweep = store.get_sweep("noop")
    assert sweep is not None and sweep.status == "completed"
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_finished_sweep_is_seen_in_the_database_before_ray_could_start(
    backend: str, local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest,
) -> None:
    import yaml

    from bench_service.cli import main as bench_main
    from bench_service.cluster import session
    from bench_service.cluster.runs import probably_finished

    spec = {"name": "done", "workloads": ["quadratic"], "optimizers": ["sgd"],
            "seeds": [0, 1], "budget": {"epochs": 1}}
    path = tmp_path / "done.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = str(tmp_path / "bench.db") if backend == "sqlite" else request.getfixturevalue(
        "pg_url")
    assert not probably_finished(str(path), db)  # no sweep yet (and no file is created)
    assert not (tmp_path / "bench.db").exists()
    assert _run(plan_sweep(parse_spec(spec)), db)[0] == 0
    assert probably_finished(str(path), db)
    assert not probably_finished(str(path), db, name="other")
    if backend == "sqlite":
        assert probably_finished(str(path), _url(tmp_path))

    def no_early_ray(**_: Any) -> None:
        raise AssertionError("a no-op resume started Ray")

    monkeypatch.setattr(session, "start_local_ray_early", no_early_ray)
    assert bench_main(["run", str(path), "--db", db, "--no-progress"],
                      start_ray_early=True) == 0
    assert "nothing to run" in capsys.readouterr().out

    store = Store(db)  # one trial to run again: Ray is worth starting early
    store.finish_trial(int(store.trials_frame("done")["trial_id"].iloc[0]),
                       {"status": "cancelled"})
    store.close()
    assert not probably_finished(str(path), db)


def test_ctrl_c_on_a_resumed_sweep_counts_every_unfinished_trial(tmp_path: Path) -> None:
    """The second Ctrl-C finds the first one's trials ``cancelled``, not pending: they are
    still unfinished, and the message counts them."""
    import re
    import signal

    from test_sweep_e2e import SLOW, _counts, _kill_session, _start, _wait_for, write_spec

    from bench_service.vocab import TRIAL_FINISHED

    db, spec = tmp_path / "bench.db", write_spec(tmp_path / "slow.yaml", SLOW)
    for round_ in range(2):
        before = _counts(db).get("completed", 0)
        proc = _start(spec, db, tmp_path)
        try:
            _wait_for(lambda b=before: _counts(db).get("completed", 0) >= b + 2, timeout=300)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
        finally:
            _kill_session(proc)
        assert proc.returncode == 130, err
        assert ("resuming" in out) == (round_ == 1)
    said = re.search(r"cancelled: (\d+) trial\(s\) not finished", out)
    assert said is not None, out
    counts = _counts(db)
    unfinished = sum(n for s, n in counts.items() if s not in TRIAL_FINISHED)
    assert int(said.group(1)) == unfinished > 0, (out, counts)
    assert counts.get("running", 0) == 0 and counts.get("pending", 0) == 0


def test_the_sweeps_size_is_said_in_steps_when_the_plan_knows_them() -> None:
    from types import SimpleNamespace

    from bench_service.cluster.runs import size_note

    assert size_note(SimpleNamespace(total_steps=1_234_567)) == ", 1,234,567 steps"
    assert size_note(SimpleNamespace()) == ""  # a plan without the count: trials only
