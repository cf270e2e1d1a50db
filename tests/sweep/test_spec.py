"""The sweep spec: shape and meaning validated up front, every error naming its field."""

from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench_service.engine.errors import ConfigError
from bench_service.sweep import SpecError, SweepSpec, TuningSpec, load_spec, parse_spec
from bench_service.sweep.errors import SHOWN_CHARS

BASE: dict[str, Any] = {
    "name": "t",
    "workloads": ["quadratic", "mlp_digits"],
    "optimizers": ["sgd", "adam", {"name": "yogi", "params": {"lr": 0.01}}],
}


def spec(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced (a value of ``...`` deletes the key)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def error_of(data: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value


def tuning(**changes: Any) -> dict[str, Any]:
    return spec(tuning={"trials_per_cell": 4, **changes})


# --- valid specs ---------------------------------------------------------------------------


def test_defaults_fill_the_optional_fields() -> None:
    s = parse_spec(spec())
    assert [e.name for e in s.schedulers] == ["constant"]
    assert [e.name for e in s.regularizers] == ["none"]
    assert s.seeds == [0]
    assert s.budget is None and s.batch_size is None
    assert (s.log_every, s.device, s.skip_incompatible, s.exclude, s.tuning) == (
        10, "cpu", False, [], None,
    )
    r = s.resources
    assert (r.cpus_per_trial, r.gpus_per_trial, r.max_retries) == (1.0, 0.0, 3)


def test_names_and_params_come_back_canonical() -> None:
    s = parse_spec(spec(optimizers=["Adam", {"name": "SGD", "params": {"lr": 1}}]))
    assert [e.name for e in s.optimizers] == ["adam", "sgd"]
    lr = s.optimizers[1].params["lr"]
    assert lr == 1.0 and isinstance(lr, float)


def test_yaml_reads_1e_minus_3_as_a_float() -> None:
    text = "name: t\nworkloads: [quadratic]\noptimizers: [{name: adam, params: {lr: 1e-3}}]\n"
    assert load_spec(text).optimizers[0].params == {"lr": 1e-3}


def test_fractional_gpus_and_budget_in_steps() -> None:
    s = parse_spec(spec(device="cuda:0", resources={"gpus_per_trial": 0.25}, budget={"steps": 50}))
    assert s.resources.gpus_per_trial == 0.25
    assert s.budget is not None and s.budget.steps == 50


def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: from_file\nworkloads: [linreg]\noptimizers: [sgd]\n")
    assert load_spec(path).name == "from_file"
    assert load_spec(str(path)).name == "from_file"


def test_tuning_defaults_and_final_seeds_from_seeds() -> None:
    s = parse_spec(tuning(objective={"metric": "val_accuracy"}) | {"workloads": ["mlp_digits"],
                                                                    "seeds": [3, 4]})
    assert isinstance(s.tuning, TuningSpec)
    assert (s.tuning.sampler, s.tuning.pruner, s.tuning.tune_seed) == ("tpe", "none", 0)
    assert s.tuning.objective.mode == "max"  # accuracies are maximised unless told otherwise
    assert s.tuning.final_seeds == [3, 4]
    t = parse_spec(tuning()).tuning
    assert t is not None and (t.objective.metric, t.objective.mode) == ("val_loss", "min")


def test_search_space_names_are_canonical() -> None:
    s = parse_spec(tuning(search_space={"Adam": {"lr": {"low": 1e-4, "high": 0.1, "log": True}}}))
    assert s.tuning is not None and list(s.tuning.search_space) == ["adam"]


def test_renamed_validates_the_new_name() -> None:
    s = parse_spec(spec())
    assert s.renamed("t2").name == "t2" and s.renamed("t2").optimizers == s.optimizers
    with pytest.raises(SpecError) as info:
        s.renamed("bad name")
    assert info.value.field == "name"


def test_spec_error_is_a_config_error() -> None:
    assert issubclass(SpecError, ConfigError)
    assert isinstance(parse_spec(spec()), SweepSpec)


# --- errors name their field ---------------------------------------------------------------


def test_unknown_optimizer_suggests_the_closest() -> None:
    err = error_of(spec(optimizers=["sgd", "adamm"]))
    assert err.field == "optimizers[1].name"
    assert "'adam'" in err.message and "did you mean" in err.message


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (spec(seeds="zero"), "seeds", "must be a list"),
        (spec(seeds=[0, True]), "seeds[1]", "integer"),
        (spec(seeds=[1, 1]), "seeds", "duplicate seed 1"),
        (spec(seeds=[-1]), "seeds[0]", ">= 0"),
        (spec(seeds=[]), "seeds", "empty"),
        (spec(optimizers=["sgd", {"name": "adam", "params": {"lr": -0.1}}]),
         "optimizers[1].params.lr", "> 0"),
        (spec(optimizers=[{"name": "adam", "params": {"lrr": 0.1}}]),
         "optimizers[0].params.lrr", "'lr'"),
        (spec(optimizers=[]), "optimizers", "empty"),
        (spec(optimizers=...), "optimizers", "required"),
        (spec(optimizers=[1]), "optimizers[0]", "name or {name, params}"),
        (spec(optimizers=[{"name": "adam", "extra": 1}]), "optimizers[0].extra", "unknown field"),
        (spec(colour="red"), "colour", "unknown field"),
        (spec(budget={"epochs": 3, "steps": 4}), "budget", "not both"),
        (spec(budget={"epochs": 0}), "budget.epochs", ">= 1"),
        (spec(budget={"epoch": 3}), "budget.epoch", "'epochs'"),
        (spec(budget=5), "budget", "{epochs: N}"),
        (spec(optimizers=["sgd", "SGD"]), "optimizers[1]", "duplicate of optimizers[0]"),
        (spec(schedulers=[{"name": "step", "params": {"gamma": 0.5}},
                          {"name": "step", "params": {"gamma": 0.5}}]),
         "schedulers[1]", "duplicate"),
        (spec(workloads=["quadratik"]), "workloads[0].name", "'quadratic'"),
        (spec(workloads=[{"name": "quadratic", "params": {"dim": 0}}]),
         "workloads[0].params.dim", ">= 1"),
        (spec(regularizers=[{"name": "dropout", "params": {"strength": 1.0}}]),
         "regularizers[0].params.strength", "< 1"),
        (spec(schedulers=[{"name": "plateau", "params": {"interval": "step"}}]),
         "schedulers[0].params.interval", "epoch only"),
        (spec(name="a b"), "name", "letters, digits"),
        (spec(name=""), "name", "empty"),
        (spec(name="x" * 101), "name", "at most 100"),
        (spec(log_every=0), "log_every", ">= 1"),
        (spec(batch_size=2.5), "batch_size", "integer"),
        (spec(device="gpu"), "device", "'cuda:N'"),
        (spec(device="cuda"), "resources.gpus_per_trial", "GPU share"),
        (spec(resources={"cpus_per_trial": 0}), "resources.cpus_per_trial", ">= 0.01"),
        (spec(resources={"gpus_per_trial": 1.5}), "resources.gpus_per_trial", "whole number"),
        (spec(resources={"max_retries": -1}), "resources.max_retries", ">= 0"),
        (spec(skip_incompatible="yes"), "skip_incompatible", "true or false"),
        (spec(exclude=[{}]), "exclude[0]", "at least one"),
        (spec(exclude=[{"workload": "quadratc"}]), "exclude[0].workload", "'quadratic'"),
        (spec(exclude=[{"seed": 1}]), "exclude[0].seed", "unknown field"),
    ],
)
def test_bad_field_is_named(data: dict[str, Any], field: str, words: str) -> None:
    err = error_of(data)
    assert err.field == field, str(err)
    assert words in err.message, str(err)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (tuning(trials_per_cell=0), "tuning.trials_per_cell", ">= 1"),
        (spec(tuning={"sampler": "tpe"}), "tuning.trials_per_cell", "required"),
        (tuning(sampler="tpee"), "tuning.sampler", "'tpe'"),
        (tuning(pruner="meadian"), "tuning.pruner", "'median'"),
        (tuning(objective={"metric": "val_acc"}), "tuning.objective.metric", "'val_accuracy'"),
        (tuning(objective={"metric": "val_loss", "mode": "minimum"}),
         "tuning.objective.mode", "min, max"),
        (tuning(objective={"metric": "val_accuracy"}), "tuning.objective.metric", "quadratic"),
        (tuning(final_seeds=[]), "tuning.final_seeds", "empty"),
        (tuning(final_seeds=[0, 0]), "tuning.final_seeds", "duplicate"),
        (tuning(tune_seed=-1), "tuning.tune_seed", ">= 0"),
        (tuning(max_concurrent=0), "tuning.max_concurrent", ">= 1"),
        (tuning(search_space={"adam": {"lr": {"low": 0.1, "high": 0.01}}}),
         "tuning.search_space.adam.lr.low", "< high"),
        (tuning(search_space={"adam": {"lr": {"low": 0.1, "high": 0.1}}}),
         "tuning.search_space.adam.lr.low", "< high"),
        (tuning(search_space={"adam": {"lr": {"low": -1.0, "high": 0.1}}}),
         "tuning.search_space.adam.lr.low", "> 0"),
        (tuning(search_space={"adam": {"lr": {"high": 0.1}}}),
         "tuning.search_space.adam.lr.low", "required"),
        (tuning(search_space={"adam": {"lr": {"low": 0.001, "hi": 0.1}}}),
         "tuning.search_space.adam.lr.hi", "'high'"),
        (tuning(search_space={"adam": {"lrr": {"low": 0.001, "high": 0.1}}}),
         "tuning.search_space.adam.lrr", "'lr'"),
        (tuning(search_space={"adamm": {"lr": {"low": 0.001, "high": 0.1}}}),
         "tuning.search_space.adamm", "'adam'"),
        (tuning(search_space={"lion": {"lr": {"low": 0.001, "high": 0.1}}}),
         "tuning.search_space.lion", "not among this spec's"),
        (tuning(search_space={"yogi": {"lr": {"low": 0.001, "high": 0.1}}}),
         "tuning.search_space.yogi.lr", "fixed in optimizers[2]"),
        (tuning(search_space={"sgd": {"lr": {"choices": []}}}),
         "tuning.search_space.sgd.lr.choices", "empty"),
        (tuning(search_space={"sgd": {"lr": {"choices": [0.1, -1.0]}}}),
         "tuning.search_space.sgd.lr.choices[1]", "> 0"),
        (spec(schedulers=["step"], tuning={"trials_per_cell": 2, "search_space": {
            "step": {"interval": {"low": 0, "high": 1}}}}),
         "tuning.search_space.step.interval", "choices"),
    ],
)
def test_bad_tuning_field_is_named(data: dict[str, Any], field: str, words: str) -> None:
    err = error_of(data)
    assert err.field == field, str(err)
    assert words in err.message, str(err)


def test_every_problem_is_kept_and_the_first_reported() -> None:
    err = error_of(spec(seeds="zero", log_every=0))
    assert {f for f, _ in err.errors} == {"seeds", "log_every"}
    assert (err.field, err.message) == err.errors[0]
    assert "1 more problem" in str(err)
    err = error_of(spec(optimizers=["adamm", {"name": "sgd", "params": {"lr": -1}}]))
    assert [f for f, _ in err.errors] == ["optimizers[0].name", "optimizers[1].params.lr"]


def test_bad_yaml_names_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("name: t\nworkloads: [quadratic\noptimizers: [sgd]\n")
    assert info.value.field == "spec"
    assert "line 3" in info.value.message and "column" in info.value.message


def test_duplicate_yaml_key_is_an_error() -> None:
    with pytest.raises(SpecError, match="duplicate key 'optimizers' at line 4"):
        load_spec("name: t\nworkloads: [linreg]\noptimizers: [sgd]\noptimizers: [adam]\n")


def test_missing_file_names_the_path() -> None:
    # A short path (messages echo at most SHOWN_CHARS of it; an xdist worker's tmp_path is
    # longer than that), so the whole path must be in the message.
    with tempfile.TemporaryDirectory(prefix="spec", dir="/tmp") as short:
        _check_missing_file_is_named(Path(short) / "nope.yaml")


def _check_missing_file_is_named(missing: Path) -> None:
    assert len(str(missing)) < SHOWN_CHARS
    for arg in (missing, str(missing)):
        with pytest.raises(SpecError) as info:
            load_spec(arg)
        assert info.value.field == "spec" and str(missing) in info.value.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    with pytest.raises(SpecError, match="must be a mapping") as info:
        load_spec(text)
    assert info.value.field == "spec"


def test_non_mapping_data_is_rejected() -> None:
    assert error_of(["not", "a", "mapping"]).field == "spec"


# --- objectives a workload reports -------------------------------------------------------------


def test_objective_may_be_any_metric_every_workload_reports() -> None:
    s = parse_spec(spec(workloads=["char_lm"], optimizers=["adam"],
                        tuning={"trials_per_cell": 2, "objective": {"metric": "val_perplexity"}}))
    assert s.tuning is not None and s.tuning.objective.mode == "min"
    acc = parse_spec(spec(workloads=["mlp_digits"],
                          tuning={"trials_per_cell": 2, "objective": {"metric": "val_accuracy"}}))
    assert acc.tuning is not None and acc.tuning.objective.mode == "max"
    err = error_of(spec(workloads=["char_lm", "quadratic"],
                        tuning={"trials_per_cell": 2, "objective": {"metric": "val_perplexity"}}))
    assert err.field == "tuning.objective.metric"
    assert "workloads[1] (quadratic) does not report 'val_perplexity'" in err.message


# --- layering --------------------------------------------------------------------------------


def test_the_sweep_package_has_no_import_cycles() -> None:
    """Every ``bench_service.sweep`` module's imports of its siblings, function-level ones
    included, form no cycle (``spec`` and ``checks`` once imported each other)."""
    import ast

    folder = Path(__file__).resolve().parents[2] / "bench_service" / "sweep"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        mod = f"bench_service.sweep.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = {d for d in deps if d.startswith("bench_service.sweep.")}
    graph.pop("bench_service.sweep.__init__", None)

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, cycles


def test_spec_module_imports_no_registry_nor_torch() -> None:
    heavy = ("torch", "ray", "optuna", "sqlalchemy", "bench_service.sweep.checks")
    code = ("import sys, bench_service.sweep.spec, bench_service.sweep.yaml_io;"
            f"bad = [m for m in {heavy!r} if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
