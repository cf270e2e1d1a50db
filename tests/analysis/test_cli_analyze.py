"""``bench analyze`` and ``bench report`` on sweeps written through the store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from _helpers import run_bench
from _synthetic import grid_trials, store_sweep, tuned_trials

from bench_service.cli import main

PLANTED = {"opt_effect": {"sgd": 0.5, "momentum": 0.2}, "sched_effect": {"cosine": -0.2},
           "interaction": {("sgd", "cosine"): 0.15}}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("analyze") / "bench.db"
    url = f"sqlite:///{path}"
    grid = grid_trials(**PLANTED)
    grid.loc[0, "status"] = "diverged"
    grid.at[0, "final"] = {}
    store_sweep(url, grid, "grid")
    store_sweep(url, grid_trials(seeds=(0,), workloads=("w1",), **PLANTED), "oneseed")
    tuned = tuned_trials()
    store_sweep(url, tuned, "tuned", spec={
        "name": "tuned", "tuning": {"objective": {"metric": "val_loss", "mode": "min"},
                                    "trials_per_cell": 6}})
    return str(path)


def test_analyze_prints_effects_rankings_and_paired_tables(db: str) -> None:
    proc = run_bench("analyze", "--sweep", "grid", "--db", db)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for heading in ("Summary", "Factorial effects per workload", "Across workloads",
                    "Robust aggregates", "Mean ranks", "Paired against each workload's best",
                    "AlgoPerf score"):
        assert heading in out
    assert "the optimizer explains" in out
    assert "1 diverged/failed trial(s) counted at the workload's worst value" in out


def test_analyze_json_and_csv(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--sweep", "grid", "--db", db, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["objective"] == "final:val_loss" and doc["cross_workload_method"] in (
        "mixed", "rank")
    effects = pd.DataFrame(doc["tables"]["effects"])
    w1 = effects[effects["workload"] == "w1"].set_index("term")
    assert w1.loc["optimizer", "significant"] and not w1.loc["regularizer", "significant"]
    assert main(["analyze", "--sweep", "grid", "--db", db, "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"effects", "aggregates", "paired", "algoperf"} <= set(table["table"])


def test_one_workload_and_one_seed_say_what_they_cannot_do(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--sweep", "grid", "--db", db, "--workload", "w1",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("single workload: no cross-workload model" in n for n in doc["notes"])
    assert doc["cross_workload_method"] is None
    assert main(["analyze", "--sweep", "oneseed", "--db", db, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("one seed per cell: no confidence intervals" in n for n in doc["notes"])
    assert all(r["ci_low"] is None for r in doc["tables"]["paired"])


def test_a_tuned_sweep_gets_budget_curves(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--sweep", "tuned", "--db", db, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    budget = pd.DataFrame(doc["tables"]["budget"])
    assert set(budget["k"]) == set(range(1, 7))
    assert len(doc["tables"]["one_shot_vs_tuned"]) == 4
    assert "final runs" in doc["trials"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--sweep", "nope"], "unknown sweep 'nope'"),
    (["--sweep", "grid", "--workload", "w9"], "no trial of sweep 'grid' has workload 'w9'"),
    (["--sweep", "grid", "--objective", "latest:val_loss"], "--objective: unknown objective"),
])
def test_bad_input_is_one_line_and_exit_2(
    db: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--db", db, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_report_is_one_self_contained_file_and_latex_tables(db: str, tmp_path: Path) -> None:
    out, tex = tmp_path / "report.html", tmp_path / "tables.tex"
    proc = run_bench("report", "--sweep", "grid", "--db", db, "-o", str(out),
                     "--latex", str(tex))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "<script src" not in text and "<link" not in text  # nothing fetched
    for part in ("Summary", "Factorial effects", "Robust aggregates", "Rank statistics",
                 "Paired comparisons", "AlgoPerf", "Spec", "Environment", "numpy"):
        assert part in text
    assert text.count('class="plotly-graph-div"') >= 5
    latex = tex.read_text(encoding="utf-8")
    assert latex.count(r"\begin{tabular}") >= 5 and r"\toprule" in latex
    assert not list(tmp_path.glob("*.part"))


def test_report_to_an_unwritable_place_is_one_line(db: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--sweep", "grid", "--db", db,
                 "-o", str(tmp_path / "missing" / "r.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_mistyped_database_is_not_created(command: str, tmp_path: Path) -> None:
    typo = tmp_path / "bench-typo.db"
    proc = run_bench(command, "--sweep", "demo", "--db", str(typo), "-o", str(tmp_path / "r"),
                     cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert list(tmp_path.iterdir()) == []
