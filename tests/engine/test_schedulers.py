"""LR schedulers, driven the way the runner drives them, against closed forms written here.

The expected curves are written out independently of the entries' own ``formula`` so that a
wrong formula cannot vouch for a wrong implementation. Any warning (e.g. torch's "scheduler
stepped before optimizer") fails the test: normal use must be silent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from bench_service.engine.config import Component
from bench_service.engine.errors import ConfigError
from bench_service.engine.schedulers import (
    SCHEDULERS,
    SchedulePlan,
    build_scheduler,
    resolve_scheduler,
)

pytestmark = pytest.mark.filterwarnings("error")

LR0 = 0.1


def drive(
    name: str,
    params: dict[str, Any] | None = None,
    epochs: int = 20,
    steps_per_epoch: int = 1,
    val_losses: Callable[[int], float] = lambda epoch: 1.0 / (epoch + 1),
    lr0: float = LR0,
) -> tuple[list[float], list[float]]:
    """Run a one-parameter SGD like the runner: LR per epoch start and per update."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=lr0)
    schedule = build_scheduler(
        Component(name, params or {}), opt, SchedulePlan(epochs, steps_per_epoch)
    )
    per_epoch: list[float] = []
    per_update: list[float] = []
    for epoch in range(epochs):
        per_epoch.append(schedule.last_lr())
        for _ in range(steps_per_epoch):
            per_update.append(schedule.last_lr())
            assert per_update[-1] == opt.param_groups[0]["lr"]
            opt.zero_grad()
            (w**2).sum().backward()
            opt.step()
            if schedule.interval == "step":
                schedule.step()
        if schedule.interval == "epoch":
            schedule.step(val_losses(epoch))
    return per_epoch, per_update


def assert_curve(got: Sequence[float], expected: Sequence[float]) -> None:
    assert len(got) == len(expected)
    for t, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert isinstance(g, float)
        assert g == pytest.approx(e, rel=1e-9, abs=1e-15), f"t={t}: {g} != {e}"


# --- each schedule against its own closed form -----------------------------------------------


def test_constant() -> None:
    got, _ = drive("constant", epochs=10)
    assert_curve(got, [LR0] * 10)


def test_step_matches_reference_table() -> None:
    got, _ = drive("step", {"step_size": 30, "gamma": 0.1}, epochs=90)
    assert_curve(got, [0.1] * 30 + [0.01] * 30 + [0.001] * 30)


def test_multistep() -> None:
    milestones = [50, 125, 160]
    got, _ = drive("multistep", {"milestones": milestones, "gamma": 0.1}, epochs=200)
    expected = [LR0 * 0.1 ** len([m for m in milestones if t >= m]) for t in range(200)]
    assert_curve(got, expected)
    assert got[49] == pytest.approx(0.1) and got[50] == pytest.approx(0.01)
    assert got[159] == pytest.approx(1e-3) and got[160] == pytest.approx(1e-4)


def test_exponential() -> None:
    got, _ = drive("exponential", {"gamma": 0.95}, epochs=100)
    assert_curve(got, [LR0 * math.exp(t * math.log(0.95)) for t in range(100)])


@pytest.mark.parametrize("t_max", [None, 30])
def test_cosine(t_max: int | None) -> None:
    eta_min, epochs = 0.002, 60
    got, _ = drive("cosine", {"T_max": t_max, "eta_min": eta_min}, epochs=epochs)
    period = t_max or epochs
    expected = [
        eta_min + (LR0 - eta_min) * 0.5 * (1 + math.cos(math.pi * t / period))
        for t in range(epochs)
    ]
    assert_curve(got, expected)


def test_cosine_restarts() -> None:
    eta_min = 0.001
    got, _ = drive(
        "cosine_restarts", {"T_0": 50, "T_mult": 2, "eta_min": eta_min}, epochs=200
    )
    # Cycles: [0, 50) of length 50, [50, 150) of length 100, [150, 350) of length 200.
    expected = []
    for t in range(200):
        start, length = (0, 50) if t < 50 else (50, 100) if t < 150 else (150, 200)
        expected.append(
            eta_min + (LR0 - eta_min) * 0.5 * (1 + math.cos(math.pi * (t - start) / length))
        )
    assert_curve(got, expected)
    assert got[50] == pytest.approx(LR0) and got[150] == pytest.approx(LR0)


def test_warmup_cosine() -> None:
    warmup, epochs, eta_min = 5, 45, 0.001
    got, _ = drive("warmup_cosine", {"warmup": warmup, "eta_min": eta_min}, epochs=epochs)
    ramp = [LR0 * k / 6 for k in range(1, 6)]  # 1/6, 2/6, ..., 5/6 of lr0
    cos = [
        eta_min + (LR0 - eta_min) * 0.5 * (1 + math.cos(math.pi * k / 40)) for k in range(40)
    ]
    assert_curve(got, ramp + cos)
    assert got[5] == pytest.approx(LR0)


def test_warmup_step() -> None:
    got, _ = drive("warmup_step", {"warmup": 4, "step_size": 10, "gamma": 0.5}, epochs=34)
    ramp = [LR0 * k / 5 for k in range(1, 5)]
    assert_curve(got, ramp + [0.1] * 10 + [0.05] * 10 + [0.025] * 10)


def test_factor_steps_per_update_down_to_min_lr() -> None:
    _, got = drive("factor", {"factor": 0.99, "min_lr": 0.01}, epochs=3, steps_per_epoch=100)
    expected = [max(0.01, LR0 * math.exp(k * math.log(0.99))) for k in range(300)]
    assert_curve(got, expected)
    assert got[-1] == 0.01  # the floor is reached (0.1 * 0.99^229 < 0.01) and held


def test_sqrt() -> None:
    got, _ = drive("sqrt", epochs=50)
    assert_curve(got, [LR0 / math.sqrt(t + 1) for t in range(50)])


def test_poly() -> None:
    got, _ = drive("poly", {"power": 0.75, "beta": 0.2}, epochs=50)
    assert_curve(got, [LR0 / (0.2 * t + 1) ** 0.75 for t in range(50)])


# --- plateau ---------------------------------------------------------------------------------


def test_plateau_reduces_after_patience_bad_epochs_and_not_before() -> None:
    # Epoch 0 sets the best; epochs 1..3 do not improve and are tolerated (patience 3); the
    # 4th non-improving epoch (epoch 4) reduces, so epoch 5 trains at lr0 * factor. The
    # counter then restarts: the next reduction is 4 bad epochs later.
    got, _ = drive(
        "plateau", {"patience": 3, "factor": 0.5}, epochs=12, val_losses=lambda epoch: 1.0
    )
    assert_curve(got, [0.1] * 5 + [0.05] * 4 + [0.025] * 3)


def test_plateau_improvement_resets_the_count() -> None:
    losses = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]  # improves at epoch 3
    got, _ = drive(
        "plateau", {"patience": 3, "factor": 0.5}, epochs=8, val_losses=lambda e: losses[e]
    )
    assert_curve(got, [0.1] * 8)  # without the reset, epoch 5 would be the 4th bad epoch


def test_plateau_keeps_rate_while_improving() -> None:
    got, _ = drive("plateau", {"patience": 0}, epochs=10)
    assert_curve(got, [LR0] * 10)


def test_plateau_step_without_metric_is_a_clear_error() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR0)
    schedule = build_scheduler(Component("plateau"), opt, SchedulePlan(10, 1))
    with pytest.raises(ValueError, match="val_loss"):
        schedule.step()


def test_plateau_with_interval_step_is_rejected() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_scheduler(Component("plateau", {"interval": "step"}))
    assert err.value.field == "scheduler.params.interval"


# --- durations: fractions of the budget and per-update intervals ------------------------------


def test_fraction_of_budget_equals_count() -> None:
    by_fraction, _ = drive("step", {"step_size": 0.5}, epochs=20)
    by_count, _ = drive("step", {"step_size": 10}, epochs=20)
    assert by_fraction == by_count
    assert_curve(by_count, [0.1] * 10 + [0.01] * 10)


def test_default_multistep_milestones_are_fractions() -> None:
    got, _ = drive("multistep", epochs=40)  # [0.5, 0.75] of 40 epochs -> [20, 30]
    assert_curve(got, [0.1] * 20 + [0.01] * 10 + [0.001] * 10)


def test_interval_step_counts_durations_in_updates() -> None:
    per_epoch, per_update = drive(
        "step", {"step_size": 0.25, "gamma": 0.5, "interval": "step"},
        epochs=4, steps_per_epoch=10,
    )
    assert_curve(per_update, [LR0 * 0.5 ** (k // 10) for k in range(40)])
    assert_curve(per_epoch, [0.1, 0.05, 0.025, 0.0125])


def test_interval_step_cosine_spans_all_updates() -> None:
    _, got = drive("cosine", {"interval": "step"}, epochs=3, steps_per_epoch=7)
    assert_curve(got, [LR0 * 0.5 * (1 + math.cos(math.pi * k / 21)) for k in range(21)])


# --- every entry: documented formula, declared ranges --------------------------------------


@pytest.mark.parametrize(
    "name", [n for n in SCHEDULERS.builtin_names() if not SCHEDULERS.get(n).metric_driven]
)
@pytest.mark.parametrize("interval", [None, "epoch", "step"])
def test_formula_matches_recorded_curve(name: str, interval: str | None) -> None:
    entry = SCHEDULERS.get(name)
    assert entry.formula is not None, f"{name} documents no closed form"
    params = {} if interval is None else {"interval": interval}
    plan = SchedulePlan(epochs=12, steps_per_epoch=5)
    hp = resolve_scheduler(Component(name, params))
    per_epoch, per_update = drive(name, params, plan.epochs, plan.steps_per_epoch)
    got = per_update if hp["interval"] == "step" else per_epoch
    expected = [entry.formula(t, LR0, hp, plan, hp["interval"]) for t in range(len(got))]
    assert_curve(got, expected)


@pytest.mark.parametrize("name", SCHEDULERS.builtin_names())
def test_declared_defaults_and_search_ranges_are_valid(name: str) -> None:
    entry = SCHEDULERS.get(name)
    assert entry.description
    for p in entry.hyperparams.params:
        if p.default is not None:
            p.validate(p.default, "scheduler.params")
        if p.tunable:
            assert p.low is not None and p.high is not None and p.low < p.high
            p.validate(p.low, "scheduler.params")
            p.validate(p.high, "scheduler.params")


# --- configuration errors name the field ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("step", {"gamma": -0.1}, "scheduler.params.gamma"),
        ("step", {"step_size": 0}, "scheduler.params.step_size"),
        ("step", {"step_size": -3}, "scheduler.params.step_size"),
        ("multistep", {"milestones": [10, 0]}, "scheduler.params.milestones[1]"),
        ("exponential", {"gamma": 0}, "scheduler.params.gamma"),
        ("cosine", {"T_max": 0}, "scheduler.params.T_max"),
        ("cosine", {"eta_min": -1e-3}, "scheduler.params.eta_min"),
        ("cosine_restarts", {"T_mult": 0}, "scheduler.params.T_mult"),
        ("cosine_restarts", {"T_mult": 1.5}, "scheduler.params.T_mult"),
        ("plateau", {"factor": 1.0}, "scheduler.params.factor"),
        ("plateau", {"patience": -1}, "scheduler.params.patience"),
        ("warmup_cosine", {"warmup": 0}, "scheduler.params.warmup"),
        ("factor", {"factor": 1.5}, "scheduler.params.factor"),
        ("poly", {"power": -0.5}, "scheduler.params.power"),
        ("step", {"interval": "batch"}, "scheduler.params.interval"),
    ],
)
def test_invalid_values_are_rejected(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_scheduler(Component(name, params))
    assert err.value.field == field


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("step", {"step_size": 2.5}, "scheduler.params.step_size"),  # neither count nor fraction
        ("warmup_cosine", {"warmup": 20}, "scheduler.params.warmup"),  # leaves no cosine
    ],
)
def test_invalid_durations_are_rejected_at_build(
    name: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        drive(name, params, epochs=20)
    assert err.value.field == field


def test_unknown_param_suggests_closest() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_scheduler(Component("step", {"gama": 0.5}))
    assert err.value.field == "scheduler.params.gama"
    assert "'gamma'" in str(err.value)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_scheduler(Component("cosin"))
    assert err.value.field == "scheduler.name"
    assert "'cosine'" in str(err.value)


# --- the modern schedules (wsd, linear, one_cycle, rex, constant_warmup) ----------------------


@pytest.mark.parametrize(
    ("shape", "f"),
    [("linear", lambda p: 1 - p), ("cosine", lambda p: 0.5 * (1 + math.cos(math.pi * p))),
     ("1-sqrt", lambda p: 1 - math.sqrt(p))],
)
def test_wsd_warms_up_holds_then_decays(shape: str, f: Callable[[float], float]) -> None:
    # 40 updates: warm-up 4, stable 4..29, decay over the last 10 to a floor of 0.01.
    _, got = drive("wsd", {"warmup": 4, "decay": 10, "shape": shape, "min_lr": 0.01},
                   epochs=4, steps_per_epoch=10)
    expected = [LR0 * k / 5 for k in range(1, 5)] + [LR0] * 26
    expected += [0.01 + (LR0 - 0.01) * f(k / 10) for k in range(10)]
    assert_curve(got, expected)


def test_wsd_decay_fraction_and_no_warmup() -> None:
    _, got = drive("wsd", {"warmup": 0, "decay": 0.25, "shape": "linear"}, epochs=2,
                   steps_per_epoch=10)
    assert_curve(got, [LR0] * 15 + [LR0 * (1 - k / 5) for k in range(5)])


def test_wsd_refuses_warmup_plus_decay_beyond_budget() -> None:
    with pytest.raises(ConfigError) as err:
        drive("wsd", {"warmup": 8, "decay": 5}, epochs=1, steps_per_epoch=10)
    assert err.value.field == "scheduler.params.warmup"


@pytest.mark.parametrize("min_lr", [0.0, 0.02])
def test_linear_to_zero_or_floor(min_lr: float) -> None:
    _, got = drive("linear", {"min_lr": min_lr}, epochs=3, steps_per_epoch=8)
    assert_curve(got, [min_lr + (LR0 - min_lr) * (1 - k / 24) for k in range(24)])


@pytest.mark.parametrize("pct_start", [0.3, 0.25])
def test_one_cycle_is_torchs_one_cycle_rate(pct_start: float) -> None:
    """Against ``torch.optim.lr_scheduler.OneCycleLR`` itself (momentum cycling off)."""
    total = 40
    _, got = drive("one_cycle", {"pct_start": pct_start, "div_factor": 10.0,
                                 "final_div_factor": 100.0}, epochs=4, steps_per_epoch=10)
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=LR0)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR0, total_steps=total, pct_start=pct_start, div_factor=10.0,
        final_div_factor=100.0, cycle_momentum=False,
    )
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert_curve(got, expected)
    assert max(got) == pytest.approx(LR0) and got[0] == pytest.approx(LR0 / 10)


def test_rex() -> None:
    _, got = drive("rex", epochs=2, steps_per_epoch=10)
    assert_curve(got, [LR0 * (1 - k / 20) / (0.5 + 0.5 * (1 - k / 20)) for k in range(20)])


def test_constant_warmup() -> None:
    _, got = drive("constant_warmup", {"warmup": 0.2}, epochs=2, steps_per_epoch=10)
    assert_curve(got, [LR0 * k / 5 for k in range(1, 5)] + [LR0] * 16)
