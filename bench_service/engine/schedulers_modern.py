"""The schedules of today's LM and vision recipes, registered on ``SCHEDULERS``.

All are closed forms run through ``LambdaLR`` (``closed_form``) and step per optimizer update
by default (``interval: step``), as these recipes do; every duration is a count or a fraction
of the budget, like the other entries'. ``t`` counts scheduler steps from 0 and ``T`` is the
budget (``plan.span``); past ``T`` each schedule holds its last value.

- ``wsd``: warm-up, stable, decay (Hägele et al. 2024; MiniCPM): the rate stays at lr0 until
  the last ``decay`` part of the budget, then falls to ``min_lr`` along a linear, cosine or
  1-sqrt shape.
- ``linear``: lr0 to ``min_lr`` (0: to zero) in a straight line over the budget.
- ``one_cycle``: ``torch.optim.lr_scheduler.OneCycleLR``'s rate (cosine up from
  lr0/div_factor to lr0 over ``pct_start`` of the budget, cosine down to
  lr0/(div_factor·final_div_factor)); momentum is left alone (the optimizer axis owns it).
- ``rex``: REX (Chen et al. 2022): lr0 (1 - z)/(1 - z/2), z = t/T.
- ``constant_warmup``: linear warm-up, then lr0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench_service.engine.errors import ConfigError
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.schedulers import (
    SCHEDULERS,
    SchedulePlan,
    SchedulerEntry,
    _duration,
    _span_param,
    _warmup,
    closed_form,
)

_MIN_LR = HyperParam("min_lr", 0.0, minimum=0.0, help="the rate at the end (0: decay to zero)")
_WARMUP_0 = _span_param("warmup", 0.05, "linear warm-up length", low=0.01, high=0.2)


def _unit(interval: str) -> str:
    return "epochs" if interval == "epoch" else "steps"


def _checked_warmup(hp: Mapping[str, Any], plan: SchedulePlan, interval: str,
                    reserved: int = 0) -> int:
    """The warm-up as a count, refused if it (plus ``reserved``) leaves nothing of the budget."""
    w = _duration(hp["warmup"], "warmup", plan, interval)
    span = plan.span(interval)
    if w + reserved >= span:
        rest = f" plus the decay ({reserved})" if reserved else ""
        raise ConfigError("scheduler.params.warmup",
                          f"warm-up ({w}){rest} must be shorter than the budget "
                          f"({span} {_unit(interval)})")
    return w


# wsd -----------------------------------------------------------------------------------------
_SHAPES = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
}


def _wsd_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
            interval: str) -> float:
    span = plan.span(interval)
    d = _duration(hp["decay"], "decay", plan, interval)
    if d > span:
        raise ConfigError("scheduler.params.decay",
                          f"must be at most the budget ({span} {_unit(interval)}), got {d}")
    w = _checked_warmup(hp, plan, interval, reserved=d) if hp["warmup"] else 0
    start = span - d
    if t < w:
        return _warmup(t, lr0, w)
    if t < start:
        return float(lr0)
    p = min(1.0, (t - start) / d)
    return float(hp["min_lr"] + (lr0 - hp["min_lr"]) * _SHAPES[hp["shape"]](p))


SCHEDULERS.register(SchedulerEntry(
    name="wsd",
    description=(
        "Warm-up, stable, decay: lr_t = lr0 (t + 1)/(W + 1) for t < W; lr0 until T - D; then "
        "min_lr + (lr0 - min_lr) f(p), p = (t - (T - D))/D, f = 1 - p (linear), "
        "(1 + cos(pi p))/2 (cosine) or 1 - sqrt(p) (1-sqrt)."
    ),
    hyperparams=ParamSpace((
        HyperParam("warmup", 0.05, low=0.01, high=0.2, minimum=0.0,
                   help="linear warm-up length W (a count, or a fraction of the budget if in "
                        "(0, 1); 0: none)"),
        _span_param("decay", 0.2, "decay length D at the end", low=0.1, high=0.5),
        HyperParam("shape", "1-sqrt", kind="choice", choices=tuple(_SHAPES),
                   help="shape of the decay"),
        _MIN_LR,
    )),
    factory=closed_form(_wsd_lr),
    interval="step",
    formula=_wsd_lr,
))


# linear --------------------------------------------------------------------------------------
def _linear_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
               interval: str) -> float:
    p = min(1.0, t / plan.span(interval))
    return float(hp["min_lr"] + (lr0 - hp["min_lr"]) * (1.0 - p))


SCHEDULERS.register(SchedulerEntry(
    name="linear",
    description="lr_t = min_lr + (lr0 - min_lr)(1 - t/T): a straight line to zero or a floor.",
    hyperparams=ParamSpace((_MIN_LR,)),
    factory=closed_form(_linear_lr),
    interval="step",
    formula=_linear_lr,
))


# one_cycle -----------------------------------------------------------------------------------
def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _one_cycle_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                  interval: str) -> float:
    span = plan.span(interval)
    initial = lr0 / hp["div_factor"]
    final = initial / hp["final_div_factor"]
    peak_at = float(hp["pct_start"] * span) - 1
    if peak_at <= 0:
        raise ConfigError("scheduler.params.pct_start",
                          f"leaves no warm-up phase in a budget of {span} {_unit(interval)}")
    t = min(t, span - 1)
    if t <= peak_at:
        return float(_cos_anneal(initial, lr0, t / peak_at))
    return float(_cos_anneal(lr0, final, (t - peak_at) / (span - 1 - peak_at)))


SCHEDULERS.register(SchedulerEntry(
    name="one_cycle",
    description=(
        "OneCycleLR's rate (anneal 'cos', two phases): from lr0/div_factor up to lr0 at step "
        "pct_start T - 1, then down to lr0/(div_factor final_div_factor) at T - 1, each "
        "phase a half cosine; momentum is not cycled."
    ),
    hyperparams=ParamSpace((
        HyperParam("pct_start", 0.3, low=0.1, high=0.5, minimum=0.0, maximum=1.0,
                   exclusive_minimum=True, exclusive_maximum=True,
                   help="fraction of the budget spent increasing the rate"),
        HyperParam("div_factor", 25.0, low=5.0, high=100.0, log=True, minimum=1.0,
                   help="initial rate = lr0 / div_factor"),
        HyperParam("final_div_factor", 1e4, minimum=1.0,
                   help="final rate = initial rate / final_div_factor"),
    )),
    factory=closed_form(_one_cycle_lr),
    interval="step",
    formula=_one_cycle_lr,
))


# rex -----------------------------------------------------------------------------------------
def _rex_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
            interval: str) -> float:
    z = min(1.0, t / plan.span(interval))
    return float(lr0 * (1.0 - z) / (1.0 - z / 2.0))


SCHEDULERS.register(SchedulerEntry(
    name="rex",
    description="REX: lr_t = lr0 (1 - z)/(1 - z/2), z = t/T (Chen et al. 2022).",
    hyperparams=ParamSpace(()),
    factory=closed_form(_rex_lr),
    interval="step",
    formula=_rex_lr,
))


# constant_warmup -----------------------------------------------------------------------------
def _constant_warmup_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                        interval: str) -> float:
    w = _checked_warmup(hp, plan, interval)
    return float(_warmup(t, lr0, w) if t < w else lr0)


SCHEDULERS.register(SchedulerEntry(
    name="constant_warmup",
    description="Linear warm-up then constant: lr_t = lr0 (t + 1)/(W + 1) for t < W, else lr0.",
    hyperparams=ParamSpace((_WARMUP_0,)),
    factory=closed_form(_constant_warmup_lr),
    interval="step",
    formula=_constant_warmup_lr,
))
