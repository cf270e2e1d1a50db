"""The planner: grid expansion, up-front incompatibility checks, stable identities, diffs."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS
from bench_service.sweep import SpecError, diff_specs, load_spec, parse_spec, plan_sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE: dict[str, Any] = {
    "name": "t",
    "workloads": ["quadratic", "mlp_digits"],
    "optimizers": ["sgd", "adam", {"name": "yogi", "params": {"lr": 0.01}}],
    "schedulers": ["constant", "cosine"],
    "seeds": [0, 1],
    "budget": {"epochs": 2},
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def plan(**changes: Any):  # type: ignore[no-untyped-def]
    return plan_sweep(parse_spec(spec(**changes)))


# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quickstart", "all_algorithms", "tuned"])
def test_examples_parse_and_plan(name: str) -> None:
    start = time.perf_counter()
    p = plan_sweep(load_spec(EXAMPLES / f"{name}.yaml"))
    # 5 s per 1,500 cells (all_algorithms grows with every registered entry).
    assert time.perf_counter() - start < 5.0 * max(1.0, len(p.cells) / 1500)
    assert p.name == name and p.cells
    # Only the pairs that are not meant to run are skipped: muon without a hidden matrix
    # (cnn_digits), schedule-free optimizers with a schedule of their own.
    assert all(c.optimizer == "muon" or (c.optimizer.startswith("schedule_free")
                                         and c.scheduler != "constant") for c in p.skipped)
    assert bool(p.skipped) == (name == "all_algorithms")
    assert "bench run examples/" in (EXAMPLES / f"{name}.yaml").read_text()


def test_quickstart_is_small_and_all_algorithms_covers_every_registry_entry() -> None:
    quick = plan_sweep(load_spec(EXAMPLES / "quickstart.yaml"))
    assert len(quick.trials) == 2 * 4 * 2 * 1 * 2
    big = plan_sweep(load_spec(EXAMPLES / "all_algorithms.yaml"))
    # every optimizer is in the grid; one with no trial there is skipped as incompatible, with
    # its reason (muon: cnn_digits has no hidden 2-D matrix)
    skipped = {s.optimizer for s in big.skipped} - {t.optimizer for t in big.trials}
    assert {t.optimizer for t in big.trials} | skipped == set(OPTIMIZERS.builtin_names())
    assert skipped == {"muon"}, skipped
    assert {t.scheduler for t in big.trials} == set(SCHEDULERS.builtin_names())
    assert {t.regularizer for t in big.trials} == set(REGULARIZERS.builtin_names())
    assert len(big.trials) >= 1000


def test_tuned_example_has_twelve_cells_with_search_spaces() -> None:
    p = plan_sweep(load_spec(EXAMPLES / "tuned.yaml"))
    assert p.tuned and p.trials == []
    assert len(p.cells) == 2 * 3 * 2
    assert p.expected_trials == 12 * (4 + 3)
    adam = next(c for c in p.cells if c.optimizer == "adam")
    assert adam.search_space["optimizer.lr"] == {
        "kind": "float", "low": 1e-4, "high": 1e-1, "log": True,
    }
    assert "optimizer.beta1" in adam.search_space  # declared tunable by the registry
    assert adam.config.seed == 0  # the tune seed


# --- the grid ------------------------------------------------------------------------------


def test_grid_is_the_product_of_the_axes_and_seeds() -> None:
    p = plan()
    assert len(p.trials) == 2 * 3 * 2 * 1 * 2
    assert len(p.cells) == 2 * 3 * 2
    assert len({t.trial_hash for t in p.trials}) == len(p.trials)
    assert len({c.cell_key for c in p.cells}) == len(p.cells)
    assert [c.cell_key for c in p.cells] == list(dict.fromkeys(t.cell_key for t in p.trials))


def test_exclude_drops_matching_cells() -> None:
    p = plan(exclude=[{"workload": "quadratic", "optimizer": "adam"}, {"scheduler": "cosine"}])
    assert len(p.trials) == (2 * 3 - 1) * 1 * 2
    assert not any(t.workload == "quadratic" and t.optimizer == "adam" for t in p.trials)
    assert {t.scheduler for t in p.trials} == {"constant"}


def test_trial_fields_come_from_the_spec() -> None:
    l2 = {"name": "l2", "params": {"strength": 1e-3}}
    p = plan(batch_size=32, log_every=5, regularizers=[l2])
    t = next(t for t in p.trials if t.workload == "mlp_digits" and t.optimizer == "yogi"
             and t.scheduler == "cosine" and t.seed == 1)
    assert t.label == "mlp_digits/yogi/cosine/l2"
    cfg = t.config
    assert (cfg.seed, cfg.batch_size, cfg.log_every, cfg.device) == (1, 32, 5, "cpu")
    assert cfg.budget.epochs == 2 and dict(cfg.optimizer.params) == {"lr": 0.01}
    assert t.trial_hash == cfg.config_hash()
    assert t.params["optimizer"]["lr"] == 0.01 and t.params["optimizer"]["beta1"] == 0.9
    assert t.params["regularizer"] == {"strength": 1e-3}
    assert (t.params["batch_size"], t.params["epochs"]) == (32, 2)


def test_step_budget_and_default_budget() -> None:
    p = plan(budget={"steps": 7})
    assert p.trials[0].config.budget.steps == 7 and p.trials[0].params["total_steps"] == 7
    q = plan(budget=None)
    quad = next(t for t in q.trials if t.workload == "quadratic")
    assert quad.params["epochs"] == 20  # the workload's default


def test_labels_show_params_only_when_a_name_repeats() -> None:
    p = plan(optimizers=[{"name": "adam", "params": {"lr": 0.01}}, "adam", "sgd"])
    assert {c.label.split("/")[1] for c in p.cells} == {"adam(lr=0.01)", "adam", "sgd"}


def test_cuda_is_checked_on_the_worker_not_the_driver() -> None:
    p = plan(device="cuda", resources={"gpus_per_trial": 0.5})
    assert all(t.config.device == "cuda" for t in p.trials)


# --- incompatible cells --------------------------------------------------------------------


def test_incompatible_cells_are_reported_before_anything_runs() -> None:
    with pytest.raises(SpecError) as info:
        plan(regularizers=["none", "batchnorm", "dropout"])
    err = info.value
    assert err.field == "regularizers[1]"
    # quadratic can use neither batchnorm nor dropout: 2 × (3 optimizers × 2 schedulers)
    assert len(err.errors) == 12 and "12 incompatible cells (of 36)" in err.message
    assert "quadratic/*/*/batchnorm" in err.message and "quadratic/*/*/dropout" in err.message
    assert "skip_incompatible: true" in err.message
    assert "{workload: quadratic, regularizer: batchnorm}" in err.message
    assert "more problem" not in str(err)


def test_incompatible_cells_compress_to_sub_grids_or_are_listed_one_by_one() -> None:
    with pytest.raises(SpecError) as info:
        plan(regularizers=["batchnorm"], exclude=[{"workload": "quadratic", "optimizer": "sgd"}])
    assert "  quadratic/{adam,yogi}/*/batchnorm: " in info.value.message
    # 5 cells that are no sub-grid: each listed
    with pytest.raises(SpecError) as info:
        plan(regularizers=["batchnorm"],
             exclude=[{"workload": "quadratic", "optimizer": "sgd", "scheduler": "constant"}])
    msg = info.value.message
    assert "5 incompatible cells (of 11)" in msg
    assert "quadratic/sgd/cosine/batchnorm" in msg and "quadratic/yogi/constant/batchnorm" in msg
    assert "quadratic/sgd/constant" not in msg
    assert "exclude: [{workload: quadratic, regularizer: batchnorm}]" in msg


def test_exclude_hint_never_covers_compatible_cells() -> None:
    # groupnorm needs a width divisible by 8: only the mlp with hidden=12 is incompatible
    with pytest.raises(SpecError) as info:
        plan(workloads=["mlp_digits", {"name": "mlp_digits", "params": {"hidden": 12}}],
             regularizers=["groupnorm"])
    msg = info.value.message
    assert "mlp_digits(hidden=12)/*/*/groupnorm" in msg
    assert "exclude:" not in msg  # {workload: mlp_digits} would also drop the good cells


def test_skip_incompatible_drops_and_lists_them() -> None:
    p = plan(regularizers=["none", "batchnorm"], skip_incompatible=True)
    assert len(p.skipped) == 6
    assert all(s.workload == "quadratic" and s.regularizer == "batchnorm" for s in p.skipped)
    assert all("batchnorm" in s.reason and s.field == "regularizers[1]" for s in p.skipped)
    assert len(p.trials) == (12 + 6) * 2


def test_exclude_makes_an_incompatible_grid_plannable() -> None:
    p = plan(regularizers=["none", "batchnorm"],
             exclude=[{"workload": "quadratic", "regularizer": "batchnorm"}])
    assert not p.skipped and len(p.trials) == 18 * 2


def test_everything_excluded_is_an_error() -> None:
    with pytest.raises(SpecError, match="nothing to run"):
        plan(exclude=[{"scheduler": "constant"}, {"scheduler": "cosine"}])


# --- identities ----------------------------------------------------------------------------


def test_trial_hash_is_stable_and_changes_with_params() -> None:
    a, b = plan(), plan()
    assert [t.trial_hash for t in a.trials] == [t.trial_hash for t in b.trials]
    assert a.spec_hash == b.spec_hash
    changed = plan(optimizers=["sgd", "adam", {"name": "yogi", "params": {"lr": 0.02}}])
    same = {t.trial_hash for t in a.trials} & {t.trial_hash for t in changed.trials}
    assert len(same) == len(a.trials) - 8  # only yogi's 2 × 2 cells × 2 seeds changed
    assert a.spec_hash != changed.spec_hash


def test_trial_hash_is_stable_across_processes() -> None:
    p = plan_sweep(load_spec(EXAMPLES / "quickstart.yaml"))
    code = (
        "from bench_service.sweep import load_spec, plan_sweep;"
        f"p = plan_sweep(load_spec({str(EXAMPLES / 'quickstart.yaml')!r}));"
        "print(p.spec_hash); print(*[t.trial_hash for t in p.trials])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split("\n")
    assert out[0] == p.spec_hash
    assert out[1].split() == [t.trial_hash for t in p.trials]


def test_seed_changes_trial_hash_but_not_cell_key() -> None:
    p = plan()
    by_cell: dict[str, set[str]] = {}
    for t in p.trials:
        by_cell.setdefault(t.cell_key, set()).add(t.trial_hash)
    assert all(len(hashes) == 2 for hashes in by_cell.values())


def test_equivalent_spellings_plan_the_same_trials() -> None:
    a = plan()
    b = plan(optimizers=["SGD", "Adam", {"name": "yogi", "params": {"lr": 1e-2}}])
    assert [t.trial_hash for t in a.trials] == [t.trial_hash for t in b.trials]


def test_spec_hash_ignores_what_cannot_change_results() -> None:
    base = plan().spec_hash
    assert plan(name="other", description="words").spec_hash == base
    assert plan(resources={"cpus_per_trial": 2, "gpus_per_trial": 0, "max_retries": 0}) \
        .spec_hash == base
    assert plan(seeds=[1, 0], schedulers=["cosine", "constant"]).spec_hash == base
    assert plan(budget={"epochs": 3}).spec_hash != base
    assert plan(seeds=[0, 1, 2]).spec_hash != base
    assert plan(log_every=5).spec_hash != base


def test_spec_dict_is_json_and_parses_back_to_the_same_sweep() -> None:
    p = plan(exclude=[{"workload": "quadratic", "optimizer": "adam"}])
    data = json.loads(json.dumps(p.spec_dict))
    assert data == p.spec_dict
    again = plan_sweep(parse_spec(data))
    assert again.spec_hash == p.spec_hash
    assert [t.trial_hash for t in again.trials] == [t.trial_hash for t in p.trials]
    assert data["optimizers"][2] == {"name": "yogi", "params": {"lr": 0.01}}
    assert data["budget"] == {"epochs": 2} and data["tuning"] is None


def test_tuned_spec_dict_round_trips() -> None:
    p = plan_sweep(load_spec(EXAMPLES / "tuned.yaml"))
    assert plan_sweep(parse_spec(p.spec_dict)).spec_hash == p.spec_hash
    assert p.spec_dict["tuning"]["final_seeds"] == [0, 1, 2]


def test_fixed_params_are_not_searched() -> None:
    p = plan(tuning={"trials_per_cell": 2})
    yogi = next(c for c in p.cells if c.optimizer == "yogi")
    assert "optimizer.lr" not in yogi.search_space and "optimizer.beta1" in yogi.search_space
    sgd = next(c for c in p.cells if c.optimizer == "sgd")
    assert math.isclose(sgd.search_space["optimizer.lr"]["low"], 1e-4)


# --- diffs ---------------------------------------------------------------------------------


def test_diff_lists_added_and_removed_entries_and_changed_values() -> None:
    old = plan().spec_dict
    new = plan(
        optimizers=["adam", {"name": "yogi", "params": {"lr": 0.01}}, "lion"],
        budget={"epochs": 30}, seeds=[0, 1, 3], name="renamed",
    ).spec_dict
    lines = diff_specs(old, new)
    assert "optimizers: added lion, removed sgd" in lines
    assert "budget.epochs: 2 -> 30" in lines
    assert "seeds: added 3" in lines
    assert len(lines) == 3  # the name is not a change of the experiment


def test_diff_shows_params_and_ignores_order() -> None:
    old = plan().spec_dict
    new = plan(optimizers=["sgd", "adam", {"name": "yogi", "params": {"lr": 0.02}}]).spec_dict
    assert diff_specs(old, new) == ["optimizers: added yogi(lr=0.02), removed yogi(lr=0.01)"]
    reordered = plan(seeds=[1, 0], schedulers=["cosine", "constant"]).spec_dict
    assert diff_specs(old, reordered) == []
    assert diff_specs(old, plan(budget={"steps": 5}).spec_dict) == [
        "budget.epochs: 2 -> (unset)", "budget.steps: (unset) -> 5",
    ]


# --- workload labels -------------------------------------------------------------------------


def test_a_workload_with_params_is_its_own_problem() -> None:
    p = plan(workloads=["quadratic", {"name": "quadratic", "params": {"condition": 10}},
                        {"name": "quadratic", "params": {"condition": 1000, "dim": 5}}])
    assert {t.workload for t in p.trials} == {
        "quadratic", "quadratic(condition=10)", "quadratic(dim=5)"}  # condition 1000: default
    assert {c.workload for c in p.cells} == {t.workload for t in p.trials}
    assert {t.config.workload.name for t in p.trials} == {"quadratic"}  # the engine's name
    per_label = {w: {t.trial_hash for t in p.trials if t.workload == w}
                 for w in {t.workload for t in p.trials}}
    assert all(len(h) == 3 * 2 * 2 for h in per_label.values())  # optimizers x schedulers x seeds


def test_workload_labels_are_exact_and_short() -> None:
    p = plan(workloads=[{"name": "linreg", "params": {"noise": 0.123456789, "dim": 7}}])
    assert p.trials[0].workload == "linreg(dim=7,noise=0.123456789)"  # sorted, never rounded
    every = {"name": "quadratic", "params": {
        "dim": 101, "condition": 1000.5, "max_curvature": 1.25, "noise": 0.123456789012,
        "init_scale": 1.5, "n_train": 1025}}
    label = plan(workloads=[every], optimizers=["sgd"], schedulers=["constant"]).cells[0].workload
    assert len(label) == 100 and label.startswith("quadratic(condition=1000.5,dim=101,")
    assert label[89] == "~" and int(label[90:], 16) >= 0  # the column holds 100 characters


def test_skipped_cells_carry_the_workload_label() -> None:
    p = plan(workloads=[{"name": "quadratic", "params": {"condition": 10}}],
             regularizers=["none", "batchnorm"], skip_incompatible=True)
    assert {s.workload for s in p.skipped} == {"quadratic(condition=10)"}


# --- labels and identities at scale -------------------------------------------------------------


def test_long_cell_labels_are_cut_with_a_hash_and_keys_are_unchanged() -> None:
    from bench_service.sweep.plan import MAX_LABEL_CHARS, cell_key_of, short_label

    many = [{"name": "multistep", "params": {"milestones": [0.01 * (i + 1) + 0.001 * j
                                                            for j in range(60)]}}
            for i in range(2)]
    p = plan(workloads=["quadratic"], optimizers=["sgd"], schedulers=many, seeds=[0])
    labels = [c.label for c in p.cells]
    assert all(len(lb) <= MAX_LABEL_CHARS for lb in labels) and len(set(labels)) == 2
    assert all("~" in lb for lb in labels)
    assert all(c.cell_key == cell_key_of(c.config) for c in p.cells)
    assert short_label("x" * 500, 300) == short_label("x" * 500, 300)
    assert short_label("abc", 300) == "abc"


def test_trial_hashes_equal_the_engines_config_hash() -> None:
    p = plan(seeds=[0, 1, 7, 2**31 - 1])
    assert all(t.trial_hash == t.config.config_hash() for t in p.trials)
    assert len({t.trial_hash for t in p.trials}) == len(p.trials)
    assert all(t.config.seed == t.seed for t in p.trials)


# --- size ---------------------------------------------------------------------------------------


def test_total_steps_and_epochs_say_how_big_a_sweep_is() -> None:
    p = plan(workloads=["quadratic"], budget={"steps": 7})
    assert p.total_steps == len(p.trials) * 7 == 3 * 2 * 2 * 7
    assert p.total_epochs == sum(t.params["epochs"] for t in p.trials)
    tuned = plan(workloads=["quadratic"], budget={"steps": 7},
                 tuning={"trials_per_cell": 4, "final_seeds": [0, 1, 2]})
    assert tuned.total_steps == len(tuned.cells) * (4 + 3) * 7
    assert isinstance(tuned.total_steps, int)


def _brute_force_cells(s: Any) -> int:
    from itertools import product

    axes = [s.workloads, s.optimizers, s.schedulers, s.regularizers]
    keys = ["workload", "optimizer", "scheduler", "regularizer"]
    return sum(
        not any(rule.matches({k: e.name for k, e in zip(keys, combo, strict=True)})
                for rule in s.exclude)
        for combo in product(*axes)
    )


@pytest.mark.parametrize("seed", range(8))
def test_cells_are_counted_exactly_by_arithmetic(seed: int) -> None:
    import random

    from bench_service.sweep.size import count_cells

    rng = random.Random(seed)
    pool = {"workloads": ["quadratic", "linreg", "rosenbrock"],
            "optimizers": ["sgd", "adam", "yogi", "lion"],
            "schedulers": ["constant", "cosine", "step"],
            "regularizers": ["none", "l2", "l1"]}
    data: dict[str, Any] = {"name": "c", "seeds": [0]}
    for axis, names in pool.items():
        chosen = rng.sample(names, rng.randint(1, len(names)))
        data[axis] = chosen
    rules = []
    for _ in range(rng.randint(0, 4)):
        rule = {axis[:-1]: rng.choice(data[axis]) for axis in pool if rng.random() < 0.5}
        if rule:
            rules.append(rule)
    data["exclude"] = rules
    from bench_service.sweep.spec import SweepSpec

    s = SweepSpec.model_validate(data)
    assert count_cells(s) == _brute_force_cells(s)


def test_sweeps_over_the_trial_limit_are_refused_with_the_count_and_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench_service.sweep.spec import SweepSpec

    big = spec(seeds=list(range(50)), workloads=["quadratic"])  # 3 x 2 x 50 = 300 trials
    assert len(plan_sweep(parse_spec(big)).trials) == 300
    with pytest.raises(SpecError) as info:
        parse_spec({**big, "max_trials": 299})
    assert info.value.field == "max_trials"
    assert "300 trials" in info.value.message and "299" in info.value.message
    monkeypatch.setenv("BENCH_MAX_TRIALS", "100")
    with pytest.raises(SpecError, match=r"over the limit of 100 \(\$BENCH_MAX_TRIALS\)"):
        parse_spec(big)
    assert len(plan_sweep(parse_spec({**big, "max_trials": 300})).trials) == 300  # spec wins
    monkeypatch.setenv("BENCH_MAX_TRIALS", "lots")
    with pytest.raises(SpecError, match="BENCH_MAX_TRIALS must be a positive integer"):
        parse_spec(big)
    monkeypatch.delenv("BENCH_MAX_TRIALS")
    # The planner counts before it builds: 4.4 x 10^9 trials are refused, not planned.
    huge = SweepSpec.model_validate({**big, "seeds": list(range(100_000)),
                                     "optimizers": [{"name": "sgd", "params": {"lr": i + 1}}
                                                    for i in range(2000)],
                                     "tuning": {"trials_per_cell": 10**6}})
    with pytest.raises(SpecError, match="4,400,000,000 trials"):
        plan_sweep(huge)


def test_max_trials_does_not_change_the_spec_hash() -> None:
    a = plan(workloads=["quadratic"])
    b = plan(workloads=["quadratic"], max_trials=1000)
    assert a.spec_hash == b.spec_hash and b.spec_dict["max_trials"] == 1000
