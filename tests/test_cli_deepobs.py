"""``bench import/export deepobs`` on Crowded Valley's real files, and the acceptance check:
``quadratic_deep`` run by ``bench run`` lands within 0.5 % of the published final test losses.

The files are read from ``/work/shared/vendor/crowded-valley`` (or ``$CROWDED_VALLEY_DIR``),
never copied into the project; the tests that need them are skipped where they are absent.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path

import pytest
from _helpers import run_bench

from bench_service.store import Store

VENDOR = Path(os.environ.get("CROWDED_VALLEY_DIR", "/work/shared/vendor/crowded-valley"))
RESULTS = VENDOR / "results"
needs_files = pytest.mark.skipif(not RESULTS.is_dir(),
                                 reason=f"Crowded Valley files not found at {RESULTS}")
#: Crowded Valley's published final test losses (none schedule, instance 1 files).
QUAD_DEEP = RESULTS / "oneshot" / "none" / "quadratic_deep"


def _ok(proc: object) -> None:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)  # type: ignore[attr-defined]


def _files() -> list[Path]:
    return sorted(RESULTS.rglob("*.json"))


@needs_files
def test_import_maps_files_curves_and_problems(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    proc = run_bench("import", "deepobs", str(RESULTS), "--sweep", "cv", "--db", str(db))
    _ok(proc)
    assert "imported 8 DeepOBS result(s)" in proc.stdout
    again = run_bench("import", "deepobs", str(RESULTS), "--sweep", "cv", "--db", str(db))
    _ok(again)
    assert "imported 0 DeepOBS result(s) into sweep 'cv' (8 already there)" in again.stdout
    with Store.open_existing(db) as store:
        trials = store.trials_frame("cv")
        curves = store.curves_frame("cv")
    assert len(trials) == 8 and set(trials["role"]) == {"imported"}
    assert set(trials["status"]) == {"completed"}
    assert set(trials["workload"]) == {"quadratic_deep", "quadratic_deep(instance=2)",
                                       "quadratic_deep(instance=4)", "fmnist_2c2d"}
    by_file = {}
    for path in _files():
        doc = json.loads(path.read_text())
        row = trials[(trials["seed"] == doc["random_seed"])
                     & (trials["final"].map(lambda f: f["test_loss"]) == doc["test_losses"][-1])]
        assert len(row) == 1, path
        by_file[path.name] = row.iloc[0]
        tid = int(row.iloc[0]["trial_id"])
        test = curves[(curves.trial_id == tid) & (curves.name == "test_loss")].sort_values("step")
        assert test["value"].tolist() == doc["test_losses"]  # exact, θ₀ first
        assert test["epoch"].tolist() == list(range(-1, doc["num_epochs"]))
    adam = by_file["random_seed__43__2020-01-18-13-00-33.json"]
    assert (adam["optimizer"], adam["scheduler"], adam["regularizer"]) == (
        "adam", "constant", "none")
    assert adam["params"]["optimizer"] == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                                           "eps": 1e-08}
    assert adam["steps"] == 700  # 7 steps per epoch (drop_last), 100 epochs
    cosine = by_file["random_seed__43__2020-02-12-22-13-27.json"]
    assert cosine["scheduler"] == "cosine" and cosine["workload"] == "quadratic_deep(instance=2)"
    momentum = trials[trials["optimizer"] == "momentum"].iloc[0]
    assert momentum["params"]["optimizer"] == {"lr": 0.01, "momentum": 0.99}
    fmnist = trials[trials["workload"] == "fmnist_2c2d"]
    assert set(fmnist["steps"]) == {39000}  # 390 steps per epoch (50,000 / 128)
    assert all(0.9 < f["test_accuracy"] < 0.92 for f in fmnist["final"])


@needs_files
def test_export_writes_imported_files_back_unchanged(tmp_path: Path) -> None:
    db, out = tmp_path / "b.db", tmp_path / "out"
    _ok(run_bench("import", "deepobs", str(RESULTS), "--sweep", "cv", "--db", str(db)))
    proc = run_bench("export", "deepobs", "--sweep", "cv", "-o", str(out), "--db", str(db))
    _ok(proc)
    for original in _files():
        written = out / original.relative_to(RESULTS)
        assert json.loads(written.read_text()) == json.loads(original.read_text()), written
        assert list(json.loads(written.read_text())) == list(json.loads(original.read_text()))


def test_a_bad_file_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    src = tmp_path / "res" / "a"
    src.mkdir(parents=True)
    (src / "ok.json").write_text(json.dumps({
        "testproblem": "quadratic_deep", "batch_size": 128, "num_epochs": 1, "random_seed": 1,
        "optimizer_name": "SGD", "optimizer_hyperparams": {"lr": 0.1},
        "test_losses": [1.0, 0.5]}))
    (src / "bad.json").write_text(json.dumps({"testproblem": "x", "batch_size": 128}))
    db = tmp_path / "b.db"
    proc = run_bench("import", "deepobs", str(tmp_path / "res"), "--sweep", "s", "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bench: error: a/bad.json: not a DeepOBS result file: no 'num_epochs'"]
    assert not db.exists()


_SPEC = """\
name: qdeep
workloads: [quadratic_deep]
optimizers: [{name: adam, params: {lr: 1.0e-3}}, {name: sgd, params: {lr: 0.01}}]
seeds: [0, 1]
budget: {epochs: 100}
"""


@needs_files
def test_quadratic_deep_lands_within_half_a_percent_of_crowded_valley(tmp_path: Path) -> None:
    """The acceptance check (README's comparison table): ours vs the published runs of the
    same problem (instance 1: θ₀ test loss 353.4468), mean over seeds each side."""
    db, spec = tmp_path / "b.db", tmp_path / "q.yaml"
    spec.write_text(_SPEC)
    _ok(run_bench("run", str(spec), "--db", str(db), "--no-progress", "--num-cpus", "2"))
    _ok(run_bench("import", "deepobs", str(QUAD_DEEP), "--sweep", "qdeep", "--db", str(db)))
    with Store.open_existing(db) as store:
        trials = store.trials_frame("qdeep", workload="quadratic_deep")
        curves = store.curves_frame("qdeep", names=["test_loss"], workload="quadratic_deep")
    assert set(trials["role"]) == {"grid", "imported"}
    theta0 = curves[curves["step"] == 0]["value"]
    assert len(theta0) == len(trials) and all(round(v, 4) == 353.4468 for v in theta0)
    final = trials.assign(test_loss=trials["final"].map(lambda f: f["test_loss"]))
    for optimizer in ("adam", "sgd"):
        ours = final[(final.optimizer == optimizer) & (final.role == "grid")]["test_loss"]
        theirs = final[(final.optimizer == optimizer) & (final.role == "imported")]["test_loss"]
        assert len(ours) == 2 and len(theirs) >= 1
        gap = abs(ours.mean() - theirs.mean()) / theirs.mean()
        assert gap < 0.005, (optimizer, ours.tolist(), theirs.tolist())

    # The leaderboard ranks the imported cells beside ours, told apart by their source.
    from bench_service.dashboard.analysis import cell_labels, leaderboard, ranked_trials

    ranked, _ = ranked_trials(trials)
    board = leaderboard(ranked, "final:test_loss", "min")
    assert len(board) == 5  # adam, sgd (ours); adam, sgd, momentum (imported)
    assert any("source=deepobs" in c for c in cell_labels(ranked))

    # Our runs export in DeepOBS's format and read back as the same numbers.
    out = tmp_path / "ours"
    _ok(run_bench("export", "deepobs", "--sweep", "qdeep", "-o", str(out), "--db", str(db)))
    exported = [json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))]
    mine = [d for d in exported if d["random_seed"] in (0, 1)]
    assert len(mine) == 4
    for doc in mine:
        assert doc["testproblem"] == "quadratic_deep" and doc["num_epochs"] == 100
        assert len(doc["test_losses"]) == len(doc["valid_losses"]) == 101
        assert len(doc["train_losses"]) == 101
        assert doc["optimizer_name"] in ("AdamOptimizer", "GradientDescentOptimizer")
        assert math.isclose(doc["test_losses"][0], 353.4468, abs_tol=1e-4)
    sgd = next(d for d in mine if d["optimizer_name"] == "GradientDescentOptimizer")
    assert sgd["optimizer_hyperparams"] == {"learning_rate": 0.01}
    _ok(run_bench("import", "deepobs", str(out), "--sweep", "back", "--db", str(db)))
    with Store.open_existing(db) as store:
        back = store.trials_frame("back")
    ours_final = sorted(f["test_loss"] for f in final[final.role == "grid"]["final"])
    back_final = sorted(f["test_loss"] for f, s in zip(back["final"], back["seed"], strict=True)
                        if s in (0, 1))
    assert back_final == ours_final


def test_a_missing_data_set_is_named_before_the_sweep_starts(tmp_path: Path) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text(textwrap.dedent("""\
        name: m
        workloads: [mnist_logreg]
        optimizers: [sgd]
        """))
    env_dir = tmp_path / "empty"
    os.environ["BENCH_DATA_DIR"] = str(env_dir)
    try:
        proc = run_bench("run", str(spec), "--db", str(tmp_path / "b.db"), "--no-progress")
    finally:
        del os.environ["BENCH_DATA_DIR"]
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("bench:")]
    assert len(lines) == 1, proc.stderr
    assert "mnist_logreg: data set mnist not found at " + str(env_dir / "mnist") in lines[0]
    assert "bench data fetch mnist" in lines[0]
    assert not (tmp_path / "b.db").exists()


@needs_files
def test_import_and_export_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The role check constraint (migration 0006) and float columns on PostgreSQL too."""
    import io

    from bench_service.cli_deepobs import export_deepobs, import_deepobs

    assert import_deepobs(QUAD_DEEP, "cv", pg_url, out=io.StringIO()) == 5
    export_deepobs("cv", tmp_path, pg_url, out=io.StringIO())
    for original in sorted(QUAD_DEEP.rglob("*.json")):
        written = tmp_path / original.relative_to(QUAD_DEEP)
        assert json.loads(written.read_text()) == json.loads(original.read_text())
