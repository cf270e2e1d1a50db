"""The trial runner: train one configuration and record how it converged.

``run_trial(config, on_metrics)`` is a pure function of its config (no Ray, no SQL): the sweep
layer calls it inside a Ray task and stores what ``on_metrics`` streams. The loop is written
to cost little over a hand-written PyTorch loop: data lives on the device, batches are index
slices, per-step losses go into a preallocated device buffer and the host reads them (one
sync) only every ``log_every`` steps, where divergence is also checked, to the exact step.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from bench_service.engine.config import Component, TrialConfig
from bench_service.engine.cost import StepCost
from bench_service.engine.errors import ConfigError, IncompatibleError, StopTrial
from bench_service.engine.optimizers import OPTIMIZERS, resolve_optimizer
from bench_service.engine.records import MetricPoint, Scope, TrialResult
from bench_service.engine.regularizers import REGULARIZERS, RegularizerEntry, resolve_regularizer
from bench_service.engine.schedulers import SCHEDULERS, SchedulePlan, resolve_scheduler
from bench_service.engine.workloads import ArchOptions, Workload, build_workload
from bench_service.vocab import higher_is_better

MetricsCallback = Callable[[list[MetricPoint]], None]


@dataclass(frozen=True)
class PreparedTrial:
    """A validated trial: every name resolved, every hyperparameter filled in."""

    config: TrialConfig
    workload: Workload
    optimizer_params: dict[str, Any]
    scheduler_params: dict[str, Any]
    regularizer: RegularizerEntry
    regularizer_params: dict[str, Any]
    arch: ArchOptions
    batch_size: int
    steps_per_epoch: int
    epochs: int
    total_steps: int

    def resolved(self) -> dict[str, Any]:
        """The effective hyperparameters of every axis (for storage and display)."""
        return {
            "workload": dict(self.workload.params),
            "optimizer": self.optimizer_params,
            "scheduler": self.scheduler_params,
            "regularizer": self.regularizer_params,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "total_steps": self.total_steps,
        }


def prepare_trial(config: TrialConfig | Mapping[str, Any]) -> PreparedTrial:
    """Resolve and check a config without training; raises ``ConfigError`` on any problem.

    This is what the sweep planner calls for every grid cell before anything runs, so that an
    incompatible combination (BatchNorm on a quadratic) is reported up front.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    workload = build_workload(cfg.workload.name, dict(cfg.workload.params))
    suggested = workload.optimizer_defaults.get(cfg.optimizer.name.lower(), {})
    opt_hp = resolve_optimizer(
        Component(cfg.optimizer.name, {**suggested, **cfg.optimizer.params})
    )
    sched_hp = resolve_scheduler(cfg.scheduler)
    reg_entry = REGULARIZERS.get(cfg.regularizer.name, where="regularizer.name")
    reg_hp = resolve_regularizer(cfg.regularizer)
    arch = reg_entry.arch_options(reg_hp)
    workload.check_arch(arch, where="regularizer")
    _check_optimizer_fits(cfg, workload, arch)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"{cfg.device!r} requested but CUDA is not available here")

    n = workload.data().n_train
    batch_size = min(cfg.batch_size or workload.default_batch_size, n)
    steps_per_epoch = n // batch_size
    if not workload.drop_last and n % batch_size > 1:
        steps_per_epoch += 1
    if cfg.budget.steps is not None:
        total = cfg.budget.steps
        epochs = math.ceil(total / steps_per_epoch)
    else:
        epochs = cfg.budget.epochs or workload.default_epochs
        total = epochs * steps_per_epoch
    return PreparedTrial(
        cfg, workload, opt_hp, sched_hp, reg_entry, reg_hp, arch, batch_size,
        steps_per_epoch, epochs, total,
    )


def _check_optimizer_fits(cfg: TrialConfig, workload: Workload, arch: ArchOptions) -> None:
    """Refuse, before anything trains, an optimizer on a model or schedule it is not for."""
    entry = OPTIMIZERS.get(cfg.optimizer.name, where="optimizer.name")
    if entry.schedulers is not None and cfg.scheduler.name.lower() not in entry.schedulers:
        raise IncompatibleError(
            "scheduler.name",
            f"{entry.name} schedules itself (constant with warm-up by construction: use its "
            f"warmup_steps); scheduler must be {' or '.join(map(repr, entry.schedulers))}, "
            f"got {cfg.scheduler.name!r}",
        )
    if entry.param_groups is not None:
        key = (entry.name, workload.name, tuple(sorted(workload.params.items())), arch)
        if key not in _FITS:  # the split depends on the model's structure, not its seed
            try:
                entry.param_groups(workload.init_model(cfg.seed, arch))
                _FITS[key] = None
            except IncompatibleError as exc:
                _FITS[key] = exc
        refused = _FITS[key]
        if refused is not None:
            raise refused


#: ``_check_optimizer_fits``' verdicts by (optimizer, workload, params, arch): the planner
#: checks every grid cell, and building a model per cell would dominate planning.
_FITS: dict[tuple[Any, ...], IncompatibleError | None] = {}


def _best(name: str, values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan
    return max(finite) if higher_is_better(name) else min(finite)


class _Recorder:
    """Collects metric points, streams them in batches and keeps the full record."""

    def __init__(self, callback: MetricsCallback | None, t0: float) -> None:
        self.callback = callback
        self.t0 = t0
        self.points: list[MetricPoint] = []
        self._pending: list[MetricPoint] = []

    def add(self, name: str, value: float, step: int, epoch: int, scope: Scope) -> None:
        p = MetricPoint(name, float(value), step, epoch, time.perf_counter() - self.t0, scope)
        self.points.append(p)
        self._pending.append(p)

    def flush(self) -> None:
        if self._pending and self.callback is not None:
            batch, self._pending = self._pending, []
            self.callback(batch)
        else:
            self._pending = []


def to_device(t: torch.Tensor, dev: torch.device | str) -> torch.Tensor:
    """Move data to the device; floating data in torch's default dtype.

    Workloads build float32 data; a run under ``torch.set_default_dtype(torch.float64)``
    (how the packed runner's equivalence tests make results exact) builds float64 models,
    and its data must follow. With the default float32 this is a plain ``.to(dev)``.
    """
    if t.is_floating_point():
        return t.to(dev, dtype=torch.get_default_dtype())
    return t.to(dev)


_warmed_up = False


def warm_up() -> None:
    """Pay, once per process, for what PyTorch imports lazily on the first optimizer step.

    ``Optimizer.step`` imports ``torch._dynamo`` on its first call (~1.5 s on 2 cores). Inside
    a trial's clock that one-off cost would land on the first trial of every process: its
    wall time, the wall-clock axis of its curves, its time to target. ``run_trial`` calls
    this before starting the clock; later calls cost nothing.
    """
    global _warmed_up
    if _warmed_up:
        return
    param = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([param], lr=0.0).step()
    _warmed_up = True


def run_trial(
    config: TrialConfig | Mapping[str, Any], on_metrics: MetricsCallback | None = None
) -> TrialResult:
    """Train one trial and return its full record; never raises for a bad run.

    Args:
        config: The trial (a ``TrialConfig`` or its dict form).
        on_metrics: Called with each new batch of ``MetricPoint`` (every ``log_every`` steps
            and every epoch). It may raise ``TrialPruned``/``TrialCancelled`` to stop the trial;
            the record so far is kept and the status says why it stopped.

    Returns:
        A ``TrialResult`` with status ``completed``, ``diverged`` (with ``diverged_step``),
        ``pruned``, ``cancelled`` or ``failed`` (with ``error``).
    """
    with contextlib.suppress(Exception):
        warm_up()
    t0 = time.perf_counter()
    rec = _Recorder(on_metrics, t0)
    device = "cpu"
    state: dict[str, Any] = {"step": 0, "epoch": 0, "train_time": 0.0, "examples": 0}
    result = TrialResult(status="completed")
    try:
        prepared = prepare_trial(config)
        device = prepared.config.device
        _train(prepared, rec, state, result)
    except StopTrial as stop:
        result.status = stop.status  # type: ignore[assignment]
    except ConfigError as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:  # user code (workload, optimizer, callback) must not kill us
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    with contextlib.suppress(Exception):  # a failing callback at the end must not lose the record
        rec.flush()
    if "cost" in state:
        cost, params, optimizer = state["cost"]
        with contextlib.suppress(Exception):
            cost.sample_memory(params, optimizer)
        for key, value in cost.summary().items():
            setattr(result, key, value)
    result.metrics = rec.points
    result.steps = state["step"]
    result.epochs = max(result.epochs, state["epoch"])
    result.wall_time = time.perf_counter() - t0
    result.device = device
    result.extra.setdefault("host", socket.gethostname())
    if state["train_time"] > 0:
        result.examples_per_sec = state["examples"] / state["train_time"]
    _summarise(result)
    return result


def _summarise(result: TrialResult) -> None:
    """Fill ``final``/``best``: from a metric's epoch points if it has any, else its steps."""
    epoch_vals: dict[str, list[float]] = {}
    step_vals: dict[str, list[float]] = {}
    for p in result.metrics:
        (epoch_vals if p.scope == "epoch" else step_vals).setdefault(p.name, []).append(p.value)
    for name in set(epoch_vals) | set(step_vals):
        vals = epoch_vals.get(name) or step_vals[name]
        result.final[name] = vals[-1]
        result.best[name] = _best(name, vals)


@torch.no_grad()
def _clip_at_zero(params: list[torch.nn.Parameter], signs: list[torch.Tensor], lam: float) -> None:
    """L1's exact zeros: a weight the step moved across 0 is set to 0, and a weight at 0
    stays there while its data gradient is within the penalty's reach (|g| <= λ, where 0 is
    a subgradient optimum: the orthant-wise rule of OWL-QN)."""
    for p, s in zip(params, signs, strict=True):
        crossed = p.sign() * s < 0
        if p.grad is not None:
            crossed |= (s == 0) & (p.grad.abs() <= lam)
        p.masked_fill_(crossed, 0.0)


def _train(
    prep: PreparedTrial, rec: _Recorder, state: dict[str, Any], result: TrialResult
) -> None:
    cfg = prep.config
    wl = prep.workload
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)  # dropout masks and any other in-model randomness
    np.random.seed(cfg.seed % 2**32)  # optimizers that draw from numpy (Kron's update coin)
    data = wl.data()
    x_train, y_train = to_device(data.x_train, dev), to_device(data.y_train, dev)
    x_val, y_val = to_device(data.x_val, dev), to_device(data.y_val, dev)
    splits = {name: (to_device(x, dev), to_device(y, dev))
              for name, (x, y) in data.eval_splits.items()}
    n = data.n_train

    model = wl.init_model(cfg.seed, prep.arch).to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    reg_params = wl.regularized_parameters(model)
    opt_entry = OPTIMIZERS.get(cfg.optimizer.name)
    groups = opt_entry.param_groups(model) if opt_entry.param_groups is not None else params
    optimizer = opt_entry.factory(groups, prep.optimizer_params)
    train_eval = opt_entry.train_eval_modes
    cost = StepCost(dev)
    state["cost"] = (cost, params, optimizer)  # summarised by run_trial however training ends
    plan = SchedulePlan(prep.epochs, prep.steps_per_epoch)
    sched_entry = SCHEDULERS.get(cfg.scheduler.name)
    schedule = sched_entry.factory(optimizer, prep.scheduler_params, plan, prep.scheduler_params[
        "interval"])
    per_step_schedule = schedule.interval == "step"
    penalty, before_step = prep.regularizer.penalty, prep.regularizer.before_step
    reg_hp = prep.regularizer_params
    clip_at_zero = prep.regularizer.clip_at_zero

    # The workload's target, with the config's value if it overrides it.
    target = wl.target if cfg.target is None else replace(wl.target, value=cfg.target)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    augment_gen = torch.Generator(device=dev).manual_seed(cfg.seed) if wl.augments else None
    log_every = cfg.log_every
    window = torch.zeros(log_every, device=dev)
    in_window = 0
    reference_loss: float | None = None
    bs, total = prep.batch_size, prep.total_steps
    step = 0
    result.extra["resolved"] = prep.resolved()
    result.extra["target"] = {"metric": target.metric, "value": target.value, "mode": target.mode}

    def evaluate_all() -> dict[str, float]:
        """Validation metrics, then each further split's under its own name (eval mode)."""
        model.eval()
        metrics = wl.evaluate(model, x_val, y_val)
        for split, (xs, ys) in splits.items():
            for key, val in wl.evaluate(model, xs, ys).items():
                metrics[split + key[3:] if key.startswith("val_") else f"{split}_{key}"] = val
        model.train()
        return metrics

    if wl.evaluate_at_start:
        for key, val in evaluate_all().items():
            rec.add(key, val, 0, -1, "epoch")
        rec.flush()

    def flush_window(epoch: int) -> bool:
        """Read the window's losses (one sync); record; return True if diverged."""
        nonlocal in_window, reference_loss
        values = window[:in_window].tolist()
        first_step = step - in_window + 1
        if reference_loss is None and values and math.isfinite(values[0]):
            reference_loss = max(abs(values[0]), 1e-12)
        bound = cfg.divergence_factor * (reference_loss or 1.0)
        for i, v in enumerate(values):
            if not math.isfinite(v) or abs(v) > bound:
                result.status = "diverged"
                result.diverged_step = first_step + i
                rec.add("train_loss", v, first_step + i, epoch, "step")
                in_window = 0
                return True
        rec.add("train_loss", sum(values) / len(values), step, epoch, "step")
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            gn = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).detach()
            rec.add("grad_norm", float(gn), step, epoch, "step")
        if per_step_schedule:
            rec.add("lr", schedule.last_lr(), step, epoch, "step")
        for key, val in wl.step_extras(model).items():
            rec.add(key, val, step, epoch, "step")
        in_window = 0
        return False

    for epoch in range(prep.epochs):
        state["epoch"] = epoch
        rec.add("lr", schedule.last_lr(), step, epoch, "epoch")
        perm = torch.randperm(n, generator=order_gen).to(dev)
        epoch_loss = torch.zeros((), device=dev)
        epoch_steps = 0
        t_epoch = time.perf_counter()
        for b in range(prep.steps_per_epoch):
            if step >= total:
                break
            idx = perm[b * bs:(b + 1) * bs]
            xb, yb = x_train[idx], y_train[idx]
            if augment_gen is not None:
                xb = wl.augment(xb, augment_gen)
            optimizer.zero_grad(set_to_none=True)
            loss = wl.loss_fn(model(xb), yb)
            objective = loss + penalty(reg_params, reg_hp) if penalty is not None else loss
            objective.backward()
            if before_step is not None:
                before_step(reg_params, optimizer, reg_hp)
            if clip_at_zero:
                signs = [p.detach().sign() for p in reg_params]
            cost.timed_step(optimizer)
            if step == 0:
                cost.sample_memory(params, optimizer)
            if clip_at_zero:
                _clip_at_zero(reg_params, signs, float(reg_hp["strength"]))
            if per_step_schedule:
                schedule.step()
            detached = loss.detach()
            window[in_window] = detached
            epoch_loss += detached
            in_window += 1
            epoch_steps += 1
            step += 1
            state["step"] = step
            state["examples"] += int(idx.shape[0])
            if in_window == log_every:
                if flush_window(epoch):
                    break
                rec.flush()
        if result.status == "completed" and in_window:
            flush_window(epoch)
        state["train_time"] += time.perf_counter() - t_epoch
        if result.status == "diverged":
            break
        rec.add("train_loss", float(epoch_loss) / max(epoch_steps, 1), step, epoch, "epoch")
        if train_eval:
            optimizer.eval()  # type: ignore[attr-defined]  # evaluate at the averaged point
        metrics = evaluate_all()
        if train_eval:
            optimizer.train()  # type: ignore[attr-defined]
        for key, val in metrics.items():
            rec.add(key, val, step, epoch, "epoch")
        result.epochs = epoch + 1
        val_loss = metrics.get("val_loss", math.nan)
        if not math.isfinite(val_loss):
            result.status, result.diverged_step = "diverged", step
            rec.flush()
            break
        tv = metrics.get(target.metric)
        if result.step_to_target is None and tv is not None and target.reached(tv):
            result.step_to_target = step
            result.time_to_target = time.perf_counter() - rec.t0
        if not per_step_schedule:
            schedule.step(val_loss)
        rec.flush()
        if step >= total:
            break
