"""Hostile specs (the fuzzer's cases): each refused with one short line naming the field,
before anything is built or written, never a traceback, a hang or a huge message."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_service.cli import main
from bench_service.sweep import SpecError, load_spec, plan_sweep

BASE = "name: h\nworkloads: [quadratic]\noptimizers: [sgd]\nbudget: {epochs: 2}\n"

#: The longest refusal any hostile spec may produce (the echo of a value is ~80 characters).
MAX_MESSAGE = 400


def _bomb(levels: int = 9, anchor: str = "a") -> str:
    """Billion laughs: ``levels`` lists of ten aliases each, 10^levels leaves in all."""
    lines = [f"{anchor}0: &{anchor}0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{anchor}{i}: &{anchor}{i} [" + ", ".join([f"*{anchor}{i - 1}"] * 10) + "]"
        for i in range(1, levels)
    ]
    return "\n".join(lines)


def _nested_bomb(field_prefix: str, levels: int = 9) -> str:
    """A bomb whose anchors live inside a flow list, with ``field_prefix`` using the last."""
    parts = ["[x, x, x, x, x, x, x, x, x, x]"]
    anchors = ["&b0 " + parts[0]]
    for i in range(1, levels):
        anchors.append(f"&b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]")
    return field_prefix.replace("BOMB", "[" + ", ".join(anchors) + "]")


def _with(**fields: str) -> str:
    """BASE with top-level lines replaced or added (values are YAML text)."""
    lines = dict(line.split(": ", 1) for line in BASE.strip().splitlines())
    lines.update(fields)
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


TUNED = "{trials_per_cell: 2, %s}"

HOSTILE = {
    # --- YAML bombs and shapes ------------------------------------------------------------
    "alias bomb in description": (
        "description: " + _nested_bomb("BOMB") + "\n" + BASE, "spec", "aliases are expanded"),
    "alias bomb in params": (
        _with(optimizers=_nested_bomb("[{name: sgd, params: {lr: BOMB}}]")),
        "spec", "aliases are expanded"),
    "alias bomb in choices": (
        _with(tuning=TUNED % ("search_space: {sgd: {lr: {choices: "
                              + _nested_bomb("BOMB") + "}}}")),
        "spec", "aliases are expanded"),
    "alias bomb in name": (_with(name=_nested_bomb("BOMB")), "spec", "aliases are expanded"),
    "alias bomb in exclude": (
        _with(exclude=_nested_bomb("[{workload: BOMB}]")), "spec", "aliases are expanded"),
    "alias bomb at top level": (_bomb() + "\n" + BASE, "spec", "aliases are expanded"),
    "long string repeated by aliases": (
        _with(description="&d '" + "x" * 100_000 + "'", seeds="[" + ", ".join(["*d"] * 60) + "]"),
        "spec", "characters"),
    "recursive alias": (_with(exclude="&e [*e]"), "spec", "recursive"),
    "deep nesting (flow)": (_with(description="[" * 10_000 + "]" * 10_000), "spec", "deeply"),
    "deep nesting (block)": (
        BASE + "description:\n" + "".join(" " * i + "- \n" for i in range(200)),
        "spec", "deeply"),
    "document over 1 MiB": (
        BASE + "description: '" + "x" * (1 << 20) + "'\n", "spec", "bytes"),
    "a file name too long": ("x" * 5000, "spec", "cannot read"),
    "a NUL byte in a file name": ("spec\x00.yaml", "spec", "cannot read"),
    "duplicate key": (BASE + "optimizers: [adam]\n", "spec", "duplicate key 'optimizers'"),
    # --- numbers the storage or float32 cannot hold -----------------------------------------
    "lr 1e400 (inf)": (
        _with(optimizers="[{name: sgd, params: {lr: 1e400}}]"),
        "optimizers[0].params.lr", "finite"),
    "lr 10^400 (integer)": (
        _with(optimizers="[{name: sgd, params: {lr: 1" + "0" * 400 + "}}]"),
        "optimizers[0].params.lr", "too large"),
    "lr 1e308 (over float32)": (
        _with(optimizers="[{name: sgd, params: {lr: 1e308}}]"),
        "optimizers[0].params.lr", "float32"),
    "lr 1e-320 (0 in float32)": (
        _with(optimizers="[{name: sgd, params: {lr: 1e-320}}]"),
        "optimizers[0].params.lr", "float32"),
    "a spec that is a list": ("[1, 2]", "spec", "must be a mapping"),
    "search range over float32": (
        _with(tuning=TUNED % "search_space: {sgd: {lr: {low: 0.001, high: 1e308}}}"),
        "tuning.search_space.sgd.lr.high", "float32"),
    "seed 2^63": (_with(seeds=f"[{2**63}]"), "seeds[0]", "<= 2147483647"),
    "seed 2^31": (_with(seeds=f"[0, {2**31}]"), "seeds[1]", "<= 2147483647"),
    "final seed 2^63": (
        _with(tuning=TUNED % f"final_seeds: [{2**63}]"), "tuning.final_seeds[0]", "<= 2147483647"),
    "tune_seed 2^31": (
        _with(tuning=TUNED % f"tune_seed: {2**31}"), "tuning.tune_seed", "<= 2147483647"),
    "steps 2^31": (_with(budget=f"{{steps: {2**31}}}"), "budget.steps", "<= 2147483647"),
    "epochs 10^12": (_with(budget="{epochs: 1000000000000}"), "budget.epochs", "<= 2147483647"),
    "epochs x steps over int32": (
        _with(budget=f"{{epochs: {2**30}}}"), "budget.epochs", "at most 2,147,483,647 steps"),
    "log_every 10^9": (_with(log_every="1000000000"), "log_every", "<= 1000000"),
    # --- resources ----------------------------------------------------------------------
    "cpus_per_trial 1e-9": (
        _with(resources="{cpus_per_trial: 1e-9}"), "resources.cpus_per_trial", ">= 0.01"),
    "cpus_per_trial inf": (
        _with(resources="{cpus_per_trial: .inf}"), "resources.cpus_per_trial", "finite"),
    "gpus_per_trial negative": (
        _with(resources="{gpus_per_trial: -1}"), "resources.gpus_per_trial", ">= 0"),
    "gpus_per_trial inf": (
        _with(resources="{gpus_per_trial: .inf}"), "resources.gpus_per_trial", "finite"),
    "max_retries 10^30": (
        _with(resources="{max_retries: 1" + "0" * 30 + "}"), "resources.max_retries", "<= 100"),
    "max_concurrent 10^9": (
        _with(tuning=TUNED % "max_concurrent: 1000000000"), "tuning.max_concurrent", "<= 10000"),
    # --- accepted before, yet unable to run ----------------------------------------------
    "device with a newline": (_with(device='"cpu\\n"'), "device", "'cpu\\n'"),
    "name with a newline": (_with(name='"x\\n"'), "name", "'x\\n'"),
    "warm-up over a 1-epoch budget": (
        _with(schedulers="[warmup_cosine]", budget="{epochs: 1}"),
        "schedulers[0].params.warmup", "shorter than the budget"),
    "tuned warm-up reaching the budget": (
        _with(schedulers="[warmup_cosine]", budget="{epochs: 4}",
              tuning=TUNED % "search_space: {warmup_cosine: {warmup: {low: 1, high: 4}}}"),
        "schedulers[0].params.warmup", "search range"),
    "objective the workload does not report": (
        _with(tuning=TUNED % "objective: {metric: val_perplexity}"),
        "tuning.objective.metric", "val_perplexity"),
    "a 10^7-trial grid": (
        _with(optimizers="[" + ", ".join(f"{{name: sgd, params: {{lr: {i + 1}e-4}}}}"
                                         for i in range(100)) + "]",
              schedulers="[" + ", ".join(f"{{name: exponential, params: {{gamma: 0.5{i:02d}}}}}"
                                         for i in range(100)) + "]",
              seeds="[" + ", ".join(map(str, range(1000))) + "]"),
        "max_trials", "10,000,000 trials"),
    "a huge parameter name": (
        _with(optimizers="[{name: sgd, params: {" + "k" * 1000 + ": 1}}]"),
        "optimizers[0].params", "1 to 100 characters"),
    "a huge algorithm name": (_with(optimizers="[" + "s" * 5000 + "]"),
                              "optimizers[0].name", "at most 100"),
}


@pytest.mark.parametrize(("text", "field", "words"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_spec_is_refused_naming_the_field(text: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        plan_sweep(load_spec(text))
    err = info.value
    assert err.field == field, str(err)
    assert words in err.message, str(err)
    assert len(str(err)) <= MAX_MESSAGE, str(err)


CLI_CASES = ["alias bomb in params", "seed 2^63", "epochs x steps over int32",
             "warm-up over a 1-epoch budget", "name with a newline", "a 10^7-trial grid",
             "deep nesting (flow)", "objective the workload does not report"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_bench_run_refuses_with_exit_2_and_writes_no_database(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "hostile.yaml"
    spec.write_text(HOSTILE[case][0])
    db = tmp_path / "bench.db"
    assert main(["run", str(spec), "--db", str(db), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and HOSTILE[case][1] in err, err
    assert len(err) <= MAX_MESSAGE + 20 and "Traceback" not in err, err
    assert not db.exists()


def test_merge_keys_are_accepted_and_own_keys_override() -> None:
    text = (
        "name: merged\nworkloads: [quadratic, linreg]\n"
        "optimizers:\n"
        "  - &sgd {name: sgd, params: {lr: 0.1}}\n"
        "  - {<<: *sgd, params: {lr: 0.01}}\n"
        "budget: {epochs: 2}\n"
        "exclude:\n"
        "  - &rule {workload: quadratic, optimizer: sgd}\n"
        "  - {<<: *rule, workload: linreg}\n"
    )
    spec = load_spec(text)
    assert [(e.name, e.params) for e in spec.optimizers] == [
        ("sgd", {"lr": 0.1}), ("sgd", {"lr": 0.01})]
    assert [r.given() for r in spec.exclude] == [
        {"workload": "quadratic", "optimizer": "sgd"},
        {"workload": "linreg", "optimizer": "sgd"}]
    with pytest.raises(SpecError, match="every cell is excluded"):
        plan_sweep(spec)


def test_a_merge_key_does_not_hide_a_duplicate_own_key() -> None:
    text = BASE + "tuning: {trials_per_cell: 2, <<: {pruner: none}, sampler: tpe, sampler: qmc}\n"
    with pytest.raises(SpecError, match="duplicate key 'sampler'"):
        load_spec(text)


def test_bounds_accept_their_largest_values() -> None:
    top = 2**31 - 1
    spec = load_spec(_with(
        seeds=f"[0, {top}]", budget="{steps: 3}", log_every="1000000",
        resources="{cpus_per_trial: 0.01, max_retries: 100, gpus_per_trial: 0}",
        tuning=TUNED % f"tune_seed: {top}, final_seeds: [{top}], max_concurrent: 10000",
    ))
    assert spec.seeds == [0, top] and spec.final_seeds == [top]
    assert plan_sweep(spec).cells[0].steps_per_trial == 3
