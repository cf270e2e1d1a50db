"""The trial runner: records, divergence, failures, streaming, determinism, every pair trains."""

from __future__ import annotations

import math

import pytest
import torch

from bench_service.engine import (
    OPTIMIZERS,
    SCHEDULERS,
    WORKLOADS,
    IncompatibleError,
    TrialConfig,
    TrialPruned,
    prepare_trial,
    run_trial,
)
from bench_service.engine.records import MetricPoint, TrialResult
from bench_service.engine.runner import _summarise
from bench_service.engine.workloads.quadratic import NoisyQuadratic

FOUR_X_SQUARED = {
    "name": "quadratic",
    "params": {"dim": 1, "max_curvature": 8.0, "condition": 1.0, "noise": 0.0, "init_scale": 2.0},
}


def cfg(**kw: object) -> TrialConfig:
    base: dict[str, object] = {"workload": "linreg", "optimizer": "sgd", "budget": {"epochs": 2}}
    base.update(kw)
    return TrialConfig.from_dict(base)


def values(result, name, scope=None):  # type: ignore[no-untyped-def]
    return [v for _, v in result.curve(name, scope)]


def test_record_has_the_fixed_metric_names_and_summary() -> None:
    r = run_trial(cfg(workload="mlp_digits", optimizer="adam", budget={"epochs": 2}))
    assert r.status == "completed", r.error
    names = {p.name for p in r.metrics}
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "grad_norm"} <= names
    assert r.epochs == 2
    assert len(r.epoch_curve("val_loss")) == 2
    assert len(r.epoch_curve("lr")) == 2
    # train loss every log_every steps, per epoch too
    spe = prepare_trial(cfg(workload="mlp_digits")).steps_per_epoch
    assert len(values(r, "train_loss", "step")) == 2 * math.ceil(spe / 10)
    assert r.steps == 2 * spe
    assert r.final["val_accuracy"] == r.epoch_curve("val_accuracy")[-1]
    assert r.best["val_loss"] == min(r.epoch_curve("val_loss"))
    assert r.examples_per_sec > 0 and r.wall_time > 0
    assert all(b.wall_time >= a.wall_time for a, b in zip(r.metrics, r.metrics[1:], strict=False))


def test_step_budget_stops_mid_epoch() -> None:
    r = run_trial(cfg(budget={"steps": 7}, log_every=3))
    assert r.status == "completed"
    assert r.steps == 7
    assert [s for s, _ in r.curve("train_loss", "step")] == [3, 6, 7]


def test_lr_far_too_high_is_diverged_with_its_step_not_an_exception() -> None:
    # f(x) = 4x², x0 = 2, plain GD: lr 0.3 multiplies x by -1.4 every step.
    r = run_trial(cfg(workload=FOUR_X_SQUARED, optimizer={"name": "sgd", "params": {"lr": 0.3}},
                      budget={"steps": 200}, log_every=10))
    assert r.status == "diverged"
    # loss_t = 16·1.96^t exceeds 1e4 × 16 first at t = 14 (the 14th update's loss is taken
    # before the update, i.e. at x_{13}): 1.96^13 < 1e4 < 1.96^14.
    k = next(t for t in range(100) if 1.96**t > 1e4)
    assert r.diverged_step == k + 1
    assert r.steps < 200
    assert r.curve("train_loss")  # the record up to the blow-up is kept


def test_lr_0125_jumps_to_the_optimum() -> None:
    r = run_trial(cfg(workload=FOUR_X_SQUARED, optimizer={"name": "sgd", "params": {"lr": 0.125}},
                      budget={"steps": 3}, log_every=1))
    assert r.status == "completed"
    assert values(r, "train_loss", "step")[0] == pytest.approx(16.0)
    assert values(r, "train_loss", "step")[1] == pytest.approx(0.0, abs=1e-12)


def test_nan_loss_is_diverged() -> None:
    r = run_trial(cfg(optimizer={"name": "sgd", "params": {"lr": 1e30}}, budget={"steps": 50}))
    assert r.status == "diverged"
    assert r.diverged_step is not None and r.diverged_step <= 50


class _Broken(NoisyQuadratic):
    name = "broken_for_test"

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("user code blew up")


def test_exception_in_user_code_is_failed_with_message() -> None:
    WORKLOADS.register(_Broken)
    try:
        r = run_trial(cfg(workload="broken_for_test"))
    finally:
        WORKLOADS.unregister("broken_for_test")
    assert r.status == "failed"
    assert "user code blew up" in (r.error or "")


def test_incompatible_regularizer_is_reported_when_built() -> None:
    with pytest.raises(IncompatibleError, match=r"quadratic.*batchnorm"):
        prepare_trial(cfg(workload="quadratic", regularizer="batchnorm"))
    r = run_trial(cfg(workload="quadratic", regularizer="batchnorm"))
    assert r.status == "failed" and "batchnorm" in (r.error or "")
    assert r.metrics == []


def test_callback_streams_every_point_in_batches_and_can_prune() -> None:
    batches: list[list] = []
    r = run_trial(cfg(budget={"epochs": 3}), on_metrics=batches.append)
    assert len(batches) > 3
    assert [p for b in batches for p in b] == r.metrics

    def prune_after_first_epoch(points):  # type: ignore[no-untyped-def]
        if any(p.name == "val_loss" for p in points):
            raise TrialPruned()

    r = run_trial(cfg(budget={"epochs": 5}), on_metrics=prune_after_first_epoch)
    assert r.status == "pruned"
    assert len(r.epoch_curve("val_loss")) == 1


def _curves(r):  # type: ignore[no-untyped-def]
    return [(p.name, p.step, p.epoch, p.scope, p.value) for p in r.metrics]


def test_same_seed_identical_different_seed_different() -> None:
    c = dict(workload="mlp_digits", optimizer="adam", regularizer="dropout", budget={"epochs": 2})
    a, b = run_trial(cfg(seed=3, **c)), run_trial(cfg(seed=3, **c))
    assert _curves(a) == _curves(b)
    d = run_trial(cfg(seed=4, **c))
    assert _curves(a) != _curves(d)


def test_best_follows_the_vocabularys_metric_direction() -> None:
    result = TrialResult(status="completed", metrics=[
        MetricPoint(name, value, step, 0, 0.0, "epoch")
        for name in ("val_acc", "val_f1", "val_perplexity", "val_loss")
        for step, value in enumerate([0.5, 0.7, 0.6])
    ])
    _summarise(result)
    assert result.best == {"val_acc": 0.7, "val_f1": 0.7, "val_perplexity": 0.5, "val_loss": 0.5}
    assert result.final["val_acc"] == 0.6


def test_time_to_target_is_recorded() -> None:
    r = run_trial(cfg(workload="mlp_digits", optimizer="adam", budget={"epochs": 3}, target=0.5))
    assert r.step_to_target is not None and r.time_to_target is not None
    first = next(p for p in r.metrics if p.name == "val_accuracy" and p.value >= 0.5)
    assert r.step_to_target == first.step


@pytest.mark.parametrize(
    "name", [n for n in SCHEDULERS.builtin_names() if not SCHEDULERS.get(n).metric_driven]
)
def test_recorded_lr_curve_equals_the_schedulers_formula(name: str) -> None:
    entry = SCHEDULERS.get(name)
    assert entry.formula is not None, f"{name} documents no closed form"
    c = cfg(scheduler=name, budget={"epochs": 12}, workload="linreg")
    prep = prepare_trial(c)
    r = run_trial(c)
    assert r.status == "completed", r.error
    from bench_service.engine.schedulers import SchedulePlan

    plan = SchedulePlan(prep.epochs, prep.steps_per_epoch)
    lr0 = prep.optimizer_params["lr"]
    hp = prep.scheduler_params
    points = [p for p in r.metrics if p.name == "lr"]
    if hp["interval"] == "epoch":
        points = [p for p in points if p.scope == "epoch"]
        expected = [entry.formula(p.epoch, lr0, hp, plan, "epoch") for p in points]
    else:
        points = [p for p in points if p.scope == "step"]
        expected = [entry.formula(p.step, lr0, hp, plan, "step") for p in points]
    assert points
    assert [p.value for p in points] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_plateau_reduces_lr_when_val_loss_stalls() -> None:
    # f(x) = 4x² with lr 0.125 reaches x = 0 in one step; val_loss then stays 0 (stalled).
    r = run_trial(cfg(workload=FOUR_X_SQUARED, optimizer={"name": "sgd", "params": {"lr": 0.125}},
                      scheduler={"name": "plateau", "params": {"patience": 2, "factor": 0.5}},
                      budget={"epochs": 6}))
    lrs = r.epoch_curve("lr")
    # epoch 0 sets the best; epochs 1-3 are bad; the third bad one (> patience) cuts the lr.
    assert lrs == pytest.approx([0.125, 0.125, 0.125, 0.125, 0.0625, 0.0625])


#: Where every optimizer is tried: a classifier with hidden matrices (every optimizer's home
#: ground, Muon's included) and a one-layer regression (no hidden matrix: Muon must refuse it
#: up front). Every workload in turn runs through the runner below. The full optimizer x workload
#: product took most of the suite's time (Kron on gpt_small alone ran past 10 minutes) and
#: tested nothing these two do not: an optimizer's arithmetic is the library's (checked in
#: test_optimizers*), a workload's training loop is the runner's.
OPTIMIZER_WORKLOADS = {"mlp_digits": {"hidden": 32}, "linreg": {}}


@pytest.mark.parametrize("workload", sorted(OPTIMIZER_WORKLOADS))
@pytest.mark.parametrize("optimizer", OPTIMIZERS.builtin_names())
def test_every_optimizer_trains_or_is_refused_up_front(optimizer: str, workload: str) -> None:
    """Default hyperparameters, short budget: the validation loss falls below its initial
    value (validation, not the noisy mini-batch loss, so that slow-but-right optimizers pass)."""
    c = cfg(workload={"name": workload, "params": OPTIMIZER_WORKLOADS[workload]},
            optimizer=optimizer, budget={"steps": 40}, batch_size=32)
    try:
        prep = prepare_trial(c)
    except IncompatibleError as exc:
        # only an optimizer that declares which models it is for may refuse one, by name
        assert OPTIMIZERS.get(optimizer).param_groups is not None, exc
        assert optimizer in str(exc) or "matri" in str(exc), exc
        assert workload != "mlp_digits", f"{optimizer} refuses an MLP: {exc}"
        return
    data = prep.workload.data()
    model = prep.workload.init_model(c.seed, prep.arch).eval()
    initial = prep.workload.evaluate(model, data.x_val, data.y_val)["val_loss"]
    r = run_trial(c)
    assert r.status == "completed", r.error
    assert r.final["val_loss"] < initial, f"{optimizer} on {workload}: {initial} -> {r.final}"


@pytest.mark.parametrize("workload", WORKLOADS.builtin_names())
def test_every_workload_runs_through_the_runner(workload: str) -> None:
    """Two steps and the whole evaluation (every split the workload reports): the runner's
    side of the workload contract. That training lowers each workload's loss is
    ``test_workloads``' contract; two steps keep the DeepOBS image nets (ResNet-18: ~1 s a
    step on 2 cores) affordable here."""
    r = run_trial(cfg(workload=workload, optimizer="adam", budget={"steps": 2}, batch_size=8))
    assert r.status == "completed", r.error
    assert r.steps == 2
    assert r.epoch_curve("val_loss") and all(math.isfinite(v) for v in r.final.values()), r.final


def test_first_trial_of_a_process_is_not_charged_torchs_lazy_imports() -> None:
    # The first Optimizer.step of a process imports torch._dynamo (>1 s). In a fresh process
    # the first trial's first logged point must still come after a few ms of training, not
    # after that import: wall times and time-to-target of every process's first trial
    # would otherwise be inflated.
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from bench_service.engine import run_trial\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "r = run_trial({'workload': 'linreg', 'optimizer': 'sgd', 'budget': {'steps': 20},"
        " 'log_every': 10})\n"
        "print(json.dumps([r.status, min(p.wall_time for p in r.metrics if p.step == 10)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    status, first_wall = json.loads(out.splitlines()[-1])
    assert status == "completed"
    assert first_wall < 0.5, f"first point at {first_wall:.2f} s: the lazy import was timed"
