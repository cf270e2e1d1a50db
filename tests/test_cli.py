"""The ``bench`` command's database handling: read commands create nothing, refused databases
are one line and exit 2 with nothing written, outputs are machine-readable, typos get hints.

Real files, real PostgreSQL schemas, real ``bench`` processes where the process matters (a
missing file must stay missing), in-process ``main`` where only the outcome does (``bench run``
refused before Ray would start).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import cli_env, run_bench
from sqlalchemy import inspect, text

from bench_service.cli import main, version
from bench_service.engine.records import TrialResult
from bench_service.store import NewTrial, Store
from bench_service.store.db import make_engine, writer
from bench_service.store.models import VERSION_TABLE

DESCRIPTION = "Adam vs SGD on a noisy quadratic, with a description longer than forty characters"
TINY = {"name": "tiny", "description": "one trial", "workloads": ["quadratic"],
        "optimizers": ["sgd"], "schedulers": ["constant"], "seeds": [0], "budget": {"epochs": 1}}
TUNED = {**TINY, "name": "tuned", "tuning": {"trials_per_cell": 2, "sampler": "random",
                                             "final_seeds": [0]}}


def _trial(i: int, optimizer: str) -> NewTrial:
    params = {"optimizer": {"lr": 0.1 * (i + 1)}}
    return NewTrial(trial_hash=f"{i:064d}", cell_key=f"quadratic-{optimizer}",
                    workload="quadratic", optimizer=optimizer, scheduler="constant",
                    regularizer="none", seed=i % 2, config={"seed": i % 2}, params=params)


def _populate(url: str) -> None:
    """Sweep ``demo``: sgd and adam, two seeds each, all completed with final/best dicts."""
    with Store(url) as store:
        sweep = store.create_sweep("demo", {"name": "demo", "description": DESCRIPTION},
                                   "0" * 64, [_trial(i, o) for i, o in
                                              enumerate(["sgd", "sgd", "adam", "adam"])])
        for t in store.trials_to_run(sweep.id):
            store.finish_trial(t.id, TrialResult(
                status="completed", final={"val_loss": 0.5, "val_accuracy": 0.75},
                best={"val_loss": 0.25}, steps=10, epochs=1, wall_time=0.1))


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    _populate(url)
    return url


def _n_sweeps(url: str) -> int:
    with Store(url, upgrade=False) as store:  # no schema check: it may be a future one
        return len(store.list_sweeps())


def _stamp(url: str, revision: str) -> None:
    engine = make_engine(url)
    with writer(engine).begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    engine.dispose()


def _spec(tmp_path: Path, spec: dict) -> str:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (f"sqlite:///{tmp_path / 'bench.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    _populate(url)
    return url


# --------------------------------------------------------------------- start-up


def test_version() -> None:
    proc = run_bench("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"bench {version()}"
    import bench_service

    assert version() == bench_service.__version__  # the checkout and its metadata agree


# --------------------------------------------------------------------- never create


@pytest.mark.parametrize("command", [["sweeps"], ["results", "--sweep", "demo"],
                                     ["dashboard", "--port", "1"], ["db", "current"]])
def test_read_commands_never_create_a_database(command: list[str], tmp_path: Path) -> None:
    typo = tmp_path / "bench-typo.db"
    proc = run_bench(*command, "--db", str(typo), cwd=tmp_path)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, str(typo), "does not exist")
    assert not proc.stdout and list(tmp_path.iterdir()) == []


def test_the_default_database_is_not_created_either(tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env().items() if k != "BENCH_DB_URL"}
    proc = subprocess.run([sys.executable, "-m", "bench_service.cli", "sweeps"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, "bench.db", "does not exist")
    assert not (tmp_path / "bench.db").exists()


def test_a_postgresql_database_without_our_schema_is_not_given_one(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["sweeps"], ["results", "--sweep", "demo"], ["dashboard"]):
        assert main([*command, "--db", pg_url]) == 2
        _one_line_error(capsys.readouterr().err, "no bench schema", "bench db upgrade")
    engine = make_engine(pg_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


# --------------------------------------------------------------------- refused databases


def test_a_future_bench_schema_is_one_line_for_every_command(
    any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stamp(any_db, "9999")
    spec = _spec(tmp_path, TINY)
    for command in (["sweeps"], ["results", "--sweep", "demo"], ["db", "upgrade"],
                    ["dashboard"], ["run", spec]):
        assert main([*command, "--db", any_db]) == 2, command
        _one_line_error(capsys.readouterr().err, "revision '9999'", "upgrade bench")
    assert main(["db", "current", "--db", any_db]) == 0
    assert "newer than this bench" in capsys.readouterr().out
    assert _n_sweeps(any_db) == 1  # the tiny sweep was not created


def test_a_future_optuna_schema_is_refused_before_the_sweep_row(
    any_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=any_db, study_name="other/cell")
    engine = make_engine(any_db)
    with writer(engine).begin() as conn:  # as a newer Optuna would have left it
        conn.execute(text("UPDATE alembic_version SET version_num = 'v99.0.0.a'"))
        conn.execute(text("UPDATE version_info SET library_version = '99.0.0'"))
    engine.dispose()
    capsys.readouterr()
    assert main(["run", _spec(tmp_path, TUNED), "--db", any_db, "--no-progress"]) == 2
    _one_line_error(capsys.readouterr().err, "Optuna schema revision 'v99.0.0.a'")
    assert _n_sweeps(any_db) == 1


@pytest.fixture
def immutable_db(db: str) -> Iterator[str]:
    path = db.removeprefix("sqlite:///")
    made = subprocess.run(["chattr", "+i", path], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {made.stderr.strip()[:200]}")
    try:
        yield db
    finally:
        subprocess.run(["chattr", "-i", path], check=True)


def test_bench_run_on_a_read_only_database_is_one_line(
    immutable_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", _spec(tmp_path, TINY), "--db", immutable_db]) == 2
    _one_line_error(capsys.readouterr().err, "is read-only")
    assert main(["sweeps", "--db", immutable_db, "--format", "json"]) == 0  # reading works
    assert [s["name"] for s in json.loads(capsys.readouterr().out)] == ["demo"]


def test_bench_run_on_a_locked_database_gives_up_with_one_line(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DB_BUSY_TIMEOUT", "1")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         f"c = sqlite3.connect({db.removeprefix('sqlite:///')!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["run", _spec(tmp_path, TINY), "--db", db]) == 2
        _one_line_error(capsys.readouterr().err, "locked by another process")
        assert main(["sweeps", "--db", db]) == 0  # a reader is not blocked (WAL)
        assert "demo" in capsys.readouterr().out
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert _n_sweeps(db) == 1


# --------------------------------------------------------------------- outputs


def test_sweeps_shows_the_description(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweeps", "--db", db, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["description"] == DESCRIPTION and row["progress"] == "4/4"
    assert main(["sweeps", "--db", db]) == 0
    assert DESCRIPTION[:37] + "..." in capsys.readouterr().out
    assert main(["sweeps", "demo", "--db", db]) == 0  # one sweep: every field in full
    shown = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert shown["description"].strip() == DESCRIPTION and shown["status"].strip() == "pending"
    assert main(["sweeps", "dmeo", "--db", db]) == 2
    _one_line_error(capsys.readouterr().err, "unknown sweep 'dmeo'", "did you mean 'demo'")


def test_csv_cells_are_json(any_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--sweep", "demo", "--db", any_db, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    expected = [{"optimizer": {"lr": 0.1 * (i + 1)}} for i in range(4)]
    assert [json.loads(p) for p in frame["params"]] == expected
    assert json.loads(frame["final"][0]) == {"val_accuracy": 0.75, "val_loss": 0.5}
    assert json.loads(frame["best"][0]) == {"val_loss": 0.25}


def test_parquet_keeps_nested_columns(db: str, tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert main(["results", "--sweep", "demo", "--db", db, "--format", "parquet",
                 "-o", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert frame["final"][0]["val_loss"] == 0.5 and frame["params"][0]["optimizer"]["lr"] == 0.1


def test_a_filter_value_the_sweep_lacks_names_those_it_has(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "--sweep", "demo", "--db", db, "--optimizer", "adamm"]) == 2
    _one_line_error(capsys.readouterr().err, "'adamm'", "did you mean 'adam'", "adam, sgd")
    assert main(["results", "--sweep", "demo", "--db", db, "--curves",
                 "--workload", "mnist"]) == 2
    _one_line_error(capsys.readouterr().err, "'mnist'", "workloads: quadratic")
    # a valid status no trial has is a real, empty answer
    assert main(["results", "--sweep", "demo", "--db", db, "--status", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "(no rows)"
    assert main(["results", "--sweep", "demo", "--db", db, "--optimizer", "adam",
                 "--format", "json"]) == 0
    assert {r["optimizer"] for r in json.loads(capsys.readouterr().out)} == {"adam"}
