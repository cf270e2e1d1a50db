"""Learning-rate scheduler registry.

Schedulers step once per epoch by default (parameters in epochs, as in PyTorch); an entry may
default to per-iteration stepping, and every scheduler accepts ``interval: epoch|step``. Any
duration parameter (step_size, milestones, T_max, T_0, warmup, ...) given as a number in
(0, 1) is a *fraction of the budget* (epochs, or steps when ``interval: step``), so that one
spec fits workloads of different lengths.

The runner calls ``schedule.last_lr()`` at the start of every epoch (the rate used during it,
what ``get_last_lr()`` gives) and ``schedule.step(val_loss)`` after each epoch, or
``schedule.step()`` after each optimizer update for ``interval: step``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LambdaLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

from bench_service.engine.config import Component
from bench_service.engine.errors import ConfigError
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.registry import Registry


@dataclass(frozen=True)
class SchedulePlan:
    """The length of a trial, so that schedules can be expressed relative to it."""

    epochs: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def span(self, interval: str) -> int:
        """Total number of scheduler steps for ``interval`` (epochs or iterations)."""
        return self.epochs if interval == "epoch" else self.total_steps

    def duration(self, value: float, interval: str) -> int:
        """Convert a duration (a count, or a fraction of the span if in (0, 1)) to a count."""
        if 0 < value < 1:
            return max(1, round(value * self.span(interval)))
        return round(value)


class LRSchedule(Protocol):
    """What the runner needs from a built scheduler."""

    interval: str

    def step(self, metric: float | None = None) -> None: ...

    def last_lr(self) -> float: ...


@dataclass(frozen=True)
class SchedulerEntry:
    """A registered LR scheduler.

    ``factory(optimizer, hp, plan, interval)`` returns an ``LRSchedule``; ``formula`` is the
    closed form ``(t, lr0, hp, plan, interval) -> lr`` written in the docs (``None`` for
    metric-driven schedules like plateau).
    """

    name: str
    description: str
    hyperparams: ParamSpace
    factory: Callable[[torch.optim.Optimizer, Mapping[str, Any], SchedulePlan, str], LRSchedule]
    interval: str = "epoch"
    formula: Callable[[int, float, Mapping[str, Any], SchedulePlan, str], float] | None = None
    step_only: bool = False
    #: Driven by the epoch's validation loss (no closed form): ``interval: step`` is refused.
    metric_driven: bool = False

    def space(self) -> ParamSpace:
        """Declared hyperparameters plus the universal ``interval``."""
        interval = HyperParam(
            "interval", self.interval, kind="choice", choices=("epoch", "step"),
            help="step the scheduler per epoch or per optimizer update",
        )
        return ParamSpace((*self.hyperparams.params, interval))


SCHEDULERS: Registry[SchedulerEntry] = Registry("schedulers", kind=SchedulerEntry)


def resolve_scheduler(component: Component, where: str = "scheduler") -> dict[str, Any]:
    """Validate ``component``'s params against its entry and fill in defaults."""
    entry = SCHEDULERS.get(component.name, where=f"{where}.name")
    hp = entry.space().resolve(component.params, f"{where}.params")
    if entry.metric_driven and hp["interval"] == "step":
        raise ConfigError(
            f"{where}.params.interval", f"{entry.name} monitors val_loss: epoch only",
        )
    return hp


def build_scheduler(
    component: Component, optimizer: torch.optim.Optimizer, plan: SchedulePlan,
    where: str = "scheduler",
) -> LRSchedule:
    """Build the schedule named by ``component`` for ``optimizer`` over ``plan``."""
    entry = SCHEDULERS.get(component.name, where=f"{where}.name")
    hp = resolve_scheduler(component, where)
    return entry.factory(optimizer, hp, plan, hp["interval"])


# --- registrations (one entry each) ---------------------------------------------------------

Formula = Callable[[int, float, Mapping[str, Any], SchedulePlan, str], float]
Factory = Callable[[torch.optim.Optimizer, Mapping[str, Any], SchedulePlan, str], LRSchedule]


class TorchSchedule:
    """Adapts a ``torch.optim.lr_scheduler`` object to ``LRSchedule``.

    Torch schedulers disagree on ``step``'s signature (``ReduceLROnPlateau`` wants the metric,
    the others must not get one: a positional argument would be read as a deprecated epoch).
    The rate is read back from the optimizer, so what is recorded is what the updates used.
    """

    def __init__(self, scheduler: LRScheduler, interval: str) -> None:
        self.scheduler = scheduler
        self.interval = interval

    def step(self, metric: float | None = None) -> None:
        """Advance one epoch or update; ``metric`` is only read by metric-driven schedules."""
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if metric is None:
                raise ValueError(
                    "plateau schedule needs the monitored value: call step(val_loss) once per "
                    "epoch (interval 'step' is not supported)"
                )
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def last_lr(self) -> float:
        """The first param group's current learning rate."""
        return float(self.scheduler.optimizer.param_groups[0]["lr"])


def _duration(value: float, key: str, plan: SchedulePlan, interval: str) -> int:
    """A duration hyperparameter as a count of scheduler steps.

    A value >= 1 must be a whole count: 2.5 epochs is neither a count nor a fraction, and
    rounding it silently would benchmark a schedule nobody asked for.
    """
    if value >= 1 and not float(value).is_integer():
        raise ConfigError(
            f"scheduler.params.{key}",
            f"must be a whole count >= 1 or a fraction in (0, 1), got {value!r}",
        )
    return plan.duration(value, interval)


def _lambda_schedule(
    optimizer: torch.optim.Optimizer, interval: str, lr_at: Callable[[int, float], float],
) -> TorchSchedule:
    """A ``LambdaLR`` following the closed form ``lr_at(t, lr0)`` in every param group.

    ``LambdaLR`` multiplies each group's initial rate by a factor; dividing by that rate here
    lets closed forms be written in absolute terms (``eta_min``, ``min_lr``) and be the very
    ``formula`` the entry documents.
    """

    def factor(lr0: float) -> Callable[[int], float]:
        return lambda t: lr_at(t, lr0) / lr0 if lr0 else 1.0

    lambdas = [factor(float(g.get("initial_lr", g["lr"]))) for g in optimizer.param_groups]
    return TorchSchedule(LambdaLR(optimizer, lambdas), interval)


def closed_form(formula: Formula) -> Factory:
    """A factory that runs ``formula`` through ``LambdaLR`` (exact, no recursion drift)."""

    def factory(
        optimizer: torch.optim.Optimizer, hp: Mapping[str, Any], plan: SchedulePlan,
        interval: str,
    ) -> LRSchedule:
        def lr_at(t: int, lr0: float) -> float:
            return formula(t, lr0, hp, plan, interval)

        return _lambda_schedule(optimizer, interval, lr_at)

    return factory


def _gamma(default: float = 0.1, low: float = 0.05, high: float = 0.9) -> HyperParam:
    return HyperParam(
        "gamma", default, low=low, high=high, minimum=0.0, exclusive_minimum=True, maximum=1.0,
        help="multiplicative decay factor, in (0, 1]",
    )


def _span_param(name: str, default: float | None, what: str, low: float | None = None,
                high: float | None = None) -> HyperParam:
    """A duration: a count >= 1, or a fraction in (0, 1) of the budget."""
    return HyperParam(
        name, default, low=low, high=high, minimum=0.0, exclusive_minimum=True,
        help=f"{what} (a count, or a fraction of the budget if in (0, 1))",
    )


_ETA_MIN = HyperParam("eta_min", 0.0, minimum=0.0, help="lowest learning rate of the cosine")
_WARMUP = _span_param("warmup", 0.1, "linear warm-up length", low=0.01, high=0.3)
_STEP_SIZE = _span_param("step_size", 0.3, "epochs/steps between decays", low=0.1, high=0.5)


# constant ------------------------------------------------------------------------------------
def _constant_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                 interval: str) -> float:
    return lr0


SCHEDULERS.register(SchedulerEntry(
    name="constant",
    description="lr_t = lr0: the baseline every schedule is compared with.",
    hyperparams=ParamSpace(()),
    factory=closed_form(_constant_lr),
    formula=_constant_lr,
))


# step ----------------------------------------------------------------------------------------
def _step_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
             interval: str) -> float:
    s = _duration(hp["step_size"], "step_size", plan, interval)
    return float(lr0 * hp["gamma"] ** (t // s))


def _make_step(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any], plan: SchedulePlan,
               interval: str) -> LRSchedule:
    s = _duration(hp["step_size"], "step_size", plan, interval)
    return TorchSchedule(StepLR(optimizer, step_size=s, gamma=hp["gamma"]), interval)


SCHEDULERS.register(SchedulerEntry(
    name="step",
    description="lr_t = lr0 * gamma^floor(t/s) (StepLR).",
    hyperparams=ParamSpace((_STEP_SIZE, _gamma())),
    factory=_make_step,
    formula=_step_lr,
))


# multistep -----------------------------------------------------------------------------------
def _milestones(hp: Mapping[str, Any], plan: SchedulePlan, interval: str) -> list[int]:
    return sorted(_duration(m, "milestones", plan, interval) for m in hp["milestones"])


def _multistep_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                  interval: str) -> float:
    passed = sum(m <= t for m in _milestones(hp, plan, interval))
    return float(lr0 * hp["gamma"] ** passed)


def _make_multistep(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any],
                    plan: SchedulePlan, interval: str) -> LRSchedule:
    milestones = _milestones(hp, plan, interval)
    return TorchSchedule(MultiStepLR(optimizer, milestones, gamma=hp["gamma"]), interval)


SCHEDULERS.register(SchedulerEntry(
    name="multistep",
    description="lr_t = lr0 * gamma^(number of milestones <= t) (MultiStepLR).",
    hyperparams=ParamSpace((
        HyperParam(
            "milestones", [0.5, 0.75], kind="list", minimum=0.0, exclusive_minimum=True,
            help="when to decay (counts, or fractions of the budget if in (0, 1))",
        ),
        _gamma(),
    )),
    factory=_make_multistep,
    formula=_multistep_lr,
))


# exponential ---------------------------------------------------------------------------------
def _exponential_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                    interval: str) -> float:
    return float(lr0 * hp["gamma"] ** t)


def _make_exponential(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any],
                      plan: SchedulePlan, interval: str) -> LRSchedule:
    return TorchSchedule(ExponentialLR(optimizer, gamma=hp["gamma"]), interval)


SCHEDULERS.register(SchedulerEntry(
    name="exponential",
    description="lr_t = lr0 * gamma^t (ExponentialLR).",
    hyperparams=ParamSpace((_gamma(0.95, 0.8, 0.999),)),
    factory=_make_exponential,
    formula=_exponential_lr,
))


# cosine --------------------------------------------------------------------------------------
def _t_max(hp: Mapping[str, Any], plan: SchedulePlan, interval: str) -> int:
    if hp["T_max"] is None:
        return plan.span(interval)
    return _duration(hp["T_max"], "T_max", plan, interval)


def _cosine_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
               interval: str) -> float:
    eta_min, period = hp["eta_min"], _t_max(hp, plan, interval)
    return float(eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / period)) / 2)


def _make_cosine(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any], plan: SchedulePlan,
                 interval: str) -> LRSchedule:
    period = _t_max(hp, plan, interval)
    return TorchSchedule(CosineAnnealingLR(optimizer, period, eta_min=hp["eta_min"]), interval)


SCHEDULERS.register(SchedulerEntry(
    name="cosine",
    description=(
        "lr_t = eta_min + (lr0 - eta_min)(1 + cos(pi t / T_max))/2 (CosineAnnealingLR; T_max "
        "defaults to the whole budget; past T_max the cosine rises again, as in PyTorch)."
    ),
    hyperparams=ParamSpace((_span_param("T_max", None, "half-period of the cosine"), _ETA_MIN)),
    factory=_make_cosine,
    formula=_cosine_lr,
))


# cosine with warm restarts -------------------------------------------------------------------
def _restarts_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                 interval: str) -> float:
    period = _duration(hp["T_0"], "T_0", plan, interval)
    while t >= period:
        t -= period
        period *= hp["T_mult"]
    eta_min = hp["eta_min"]
    return float(eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / period)) / 2)


def _make_restarts(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any],
                   plan: SchedulePlan, interval: str) -> LRSchedule:
    t0 = _duration(hp["T_0"], "T_0", plan, interval)
    return TorchSchedule(
        CosineAnnealingWarmRestarts(optimizer, t0, T_mult=hp["T_mult"], eta_min=hp["eta_min"]),
        interval,
    )


SCHEDULERS.register(SchedulerEntry(
    name="cosine_restarts",
    description=(
        "SGDR: lr_t = eta_min + (lr0 - eta_min)(1 + cos(pi T_cur / T_i))/2 with periods "
        "T_i = T_0, T_0 * T_mult, ... and T_cur the steps since the last restart "
        "(CosineAnnealingWarmRestarts)."
    ),
    hyperparams=ParamSpace((
        _span_param("T_0", 0.25, "first period", low=0.05, high=0.5),
        HyperParam("T_mult", 2, kind="int", low=1, high=3, minimum=1,
                   help="period growth factor after each restart"),
        _ETA_MIN,
    )),
    factory=_make_restarts,
    formula=_restarts_lr,
))


# plateau -------------------------------------------------------------------------------------
def _make_plateau(optimizer: torch.optim.Optimizer, hp: Mapping[str, Any], plan: SchedulePlan,
                  interval: str) -> LRSchedule:
    if interval != "epoch":
        raise ConfigError("scheduler.params.interval", "plateau monitors val_loss: epoch only")
    scheduler = ReduceLROnPlateau(
        optimizer, mode="min", factor=hp["factor"], patience=hp["patience"],
        threshold=hp["threshold"], min_lr=hp["min_lr"],
    )
    return TorchSchedule(scheduler, interval)


SCHEDULERS.register(SchedulerEntry(
    name="plateau",
    description=(
        "ReduceLROnPlateau(mode='min') on the validation loss: lr <- max(min_lr, lr * factor) "
        "once more than `patience` consecutive epochs failed to improve on the best by a relative "
        "`threshold` (PyTorch semantics: patience 10 reduces after the 11th bad epoch)."
    ),
    hyperparams=ParamSpace((
        HyperParam("factor", 0.1, low=0.1, high=0.5, minimum=0.0, maximum=1.0,
                   exclusive_minimum=True, exclusive_maximum=True,
                   help="multiplier applied on a plateau"),
        HyperParam("patience", 10, kind="int", low=2, high=20, minimum=0,
                   help="non-improving epochs tolerated before reducing"),
        HyperParam("threshold", 1e-4, minimum=0.0, help="relative improvement that counts"),
        HyperParam("min_lr", 0.0, minimum=0.0, help="floor of the learning rate"),
    )),
    factory=_make_plateau,
    metric_driven=True,
))


# warm-up variants ----------------------------------------------------------------------------
def _warmup(t: int, lr0: float, w: int) -> float:
    """Linear warm-up ``lr0 (t + 1)/(W + 1)`` for t < W.

    It never gives 0 (a whole epoch at lr 0 would be wasted) and would reach lr0 exactly at
    t = W, where the following schedule starts from lr0: the curve is continuous.
    """
    return lr0 * (t + 1) / (w + 1)


def _warmup_cosine_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                      interval: str) -> float:
    w, span = _duration(hp["warmup"], "warmup", plan, interval), plan.span(interval)
    if w >= span:
        unit = "epochs" if interval == "epoch" else "steps"
        raise ConfigError("scheduler.params.warmup",
                          f"must be shorter than the budget ({span} {unit}), got {w}")
    if t < w:
        return _warmup(t, lr0, w)
    progress = min(1.0, (t - w) / (span - w))
    eta_min = hp["eta_min"]
    return float(eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * progress)) / 2)


SCHEDULERS.register(SchedulerEntry(
    name="warmup_cosine",
    description=(
        "Linear warm-up then cosine over the rest of the budget T (LambdaLR): "
        "lr_t = lr0 (t + 1)/(W + 1) for t < W; "
        "lr_t = eta_min + (lr0 - eta_min)(1 + cos(pi (t - W)/(T - W)))/2 for t >= W "
        "(held at eta_min past T)."
    ),
    hyperparams=ParamSpace((_WARMUP, _ETA_MIN)),
    factory=closed_form(_warmup_cosine_lr),
    formula=_warmup_cosine_lr,
))


def _warmup_step_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
                    interval: str) -> float:
    w = _duration(hp["warmup"], "warmup", plan, interval)
    s = _duration(hp["step_size"], "step_size", plan, interval)
    if t < w:
        return _warmup(t, lr0, w)
    return float(lr0 * hp["gamma"] ** ((t - w) // s))


SCHEDULERS.register(SchedulerEntry(
    name="warmup_step",
    description=(
        "Linear warm-up then step decay counted from the end of warm-up (LambdaLR): "
        "lr_t = lr0 (t + 1)/(W + 1) for t < W; lr_t = lr0 * gamma^floor((t - W)/s) for t >= W."
    ),
    hyperparams=ParamSpace((_WARMUP, _STEP_SIZE, _gamma())),
    factory=closed_form(_warmup_step_lr),
    formula=_warmup_step_lr,
))


# factor, sqrt, poly --------------------------------------------------------------------------
def _factor_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
               interval: str) -> float:
    if t == 0:
        return lr0
    return float(max(hp["min_lr"], lr0 * hp["factor"] ** t))


SCHEDULERS.register(SchedulerEntry(
    name="factor",
    description=(
        "lr_{t+1} = max(min_lr, lr_t * factor), i.e. lr_t = max(min_lr, lr0 * factor^t) for "
        "t >= 1; per optimizer update by default."
    ),
    hyperparams=ParamSpace((
        HyperParam("factor", 0.999, low=0.99, high=0.9999, minimum=0.0, maximum=1.0,
                   exclusive_minimum=True, help="multiplier per step"),
        HyperParam("min_lr", 0.0, minimum=0.0, help="floor of the learning rate"),
    )),
    factory=closed_form(_factor_lr),
    interval="step",
    formula=_factor_lr,
))


def _sqrt_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
             interval: str) -> float:
    return float(lr0 * (t + 1) ** -0.5)


SCHEDULERS.register(SchedulerEntry(
    name="sqrt",
    description="lr_t = lr0 * (t + 1)^-1/2 (LambdaLR).",
    hyperparams=ParamSpace(()),
    factory=closed_form(_sqrt_lr),
    formula=_sqrt_lr,
))


def _poly_lr(t: int, lr0: float, hp: Mapping[str, Any], plan: SchedulePlan,
             interval: str) -> float:
    return float(lr0 * (hp["beta"] * t + 1) ** -hp["power"])


SCHEDULERS.register(SchedulerEntry(
    name="poly",
    description=(
        "lr_t = lr0 * (beta t + 1)^-power (LambdaLR; never reaches 0, unlike PolynomialLR)."
    ),
    hyperparams=ParamSpace((
        HyperParam("power", 0.5, low=0.1, high=1.0, minimum=0.0, exclusive_minimum=True,
                   help="decay exponent (alpha)"),
        HyperParam("beta", 1.0, low=0.01, high=10.0, log=True, minimum=0.0,
                   exclusive_minimum=True, help="time scale (beta)"),
    )),
    factory=closed_form(_poly_lr),
    formula=_poly_lr,
))


# The schedules of current LM/vision recipes (wsd, linear, one_cycle, rex, constant_warmup)
# live in their own module; importing it registers them after the classics above.
from bench_service.engine import schedulers_modern  # noqa: E402, F401
