"""Packed trials: K small trials trained as one vmapped program.

Small benchmark trials leave a GPU idle (a step is a handful of tiny kernels), so K members
that share a workload, batch size, architecture and optimizer (differing in seed and
hyperparameters) are trained together: their parameters are stacked (``stack_module_state``),
the gradient of every member comes from one ``vmap(grad(functional_call))``, every
hyperparameter and the learning rate of each step is a ``[K]`` tensor, and the optimizer is
an elementwise update over the stacked tensors (``engine.packed_optim``).

``run_packed(configs, callbacks)`` returns one ``TrialResult`` per member in exactly the form
``run_trial`` returns: the same metric points at the same steps, divergence detected per
member at its exact step (that member is frozen, the others go on), per-member pruning and
cancelling (a callback raising ``StopTrial``), per-member schedules and data order from each
member's seed. Members that stop are dropped from the stacked tensors at the next record
point, so a pruned member stops costing compute. On CPU, dropout masks are drawn from a
generator per member seeded like ``run_trial``'s global RNG, so a member's curves are those of
its own ``run_trial`` (the equivalence tests check it in float64); on CUDA they are drawn in
one batch, independent per member but not bit-equal to an unpacked run.

``packability(config)`` is the one place that decides whether a trial can be packed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from bench_service.engine.config import TrialConfig
from bench_service.engine.errors import ConfigError, StopTrial
from bench_service.engine.packed_optim import PACKED_RULES, pack_state, per_member
from bench_service.engine.records import MetricPoint, TrialResult
from bench_service.engine.runner import (
    MetricsCallback,
    PreparedTrial,
    _Recorder,
    _summarise,
    prepare_trial,
    run_trial,
    to_device,
    warm_up,
)
from bench_service.engine.schedulers import SCHEDULERS, SchedulePlan
from bench_service.engine.workloads.base import Workload

#: Regularizers a pack can hold, and how each acts there (penalty, decay, mask, layer).
PACKABLE_REGULARIZERS = frozenset({
    "none", "l1", "l2", "weight_decay", "decoupled_weight_decay", "dropout", "layernorm",
    "groupnorm",
})


def packability(config: TrialConfig | Mapping[str, Any]) -> str | None:
    """Why ``config`` cannot run packed, or ``None`` if it can (the one place that decides).

    A config that does not even prepare is reported unpackable too: it then runs (and fails
    with its own message) through ``run_trial``.
    """
    try:
        prep = prepare_trial(config)
    except ConfigError as exc:
        return f"invalid config ({exc})"
    return _reason(prep)


def _reason(prep: PreparedTrial) -> str | None:
    cfg = prep.config
    if cfg.optimizer.name not in PACKED_RULES:
        return (f"optimizer {cfg.optimizer.name!r} has no elementwise packed update "
                "(matrix optimizers must not couple members)")
    reg = cfg.regularizer.name
    if reg not in PACKABLE_REGULARIZERS:
        why = ("its in-place running statistics do not go through torch.func.grad"
               if reg == "batchnorm" else "not written for packing")
        return f"regularizer {reg!r} cannot be packed: {why}"
    sched = SCHEDULERS.get(cfg.scheduler.name)
    if sched.metric_driven:
        return (f"scheduler {sched.name!r} follows each member's val_loss (a host sync per "
                "member every epoch)")
    if not getattr(type(prep.workload), "packable", True):
        return f"workload {prep.workload.name!r} declares its model not packable"
    return None


def pack_key(prep: PreparedTrial) -> tuple[Any, ...]:
    """What members of one pack must share: same key, same program."""
    cfg = prep.config
    return (
        prep.workload.name, tuple(sorted(prep.workload.params.items())), prep.batch_size,
        prep.arch.norm, prep.arch.dropout > 0, cfg.optimizer.name, cfg.regularizer.name,
        prep.epochs, prep.steps_per_epoch, prep.total_steps, cfg.log_every, cfg.device,
    )


def pack_key_of(config: TrialConfig | Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``pack_key`` of a packable config, ``None`` if it cannot be packed."""
    try:
        prep = prepare_trial(config)
    except ConfigError:
        return None
    return None if _reason(prep) is not None else pack_key(prep)


class _MaskDropout(nn.Module):
    """Dropout whose (already scaled) mask is given from outside, one per member.

    ``torch.func`` transforms cannot draw from K generators at once, so the packed step
    draws the masks first (per member) and hands them in; with no mask set, the module
    records the shape it would need (a dry run) and passes its input through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None
        self.seen_shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.mask is None:
            self.seen_shape = tuple(x.shape)
            return x
        return x * self.mask


@dataclass
class _Member:
    """One member's record and state, mirroring what ``run_trial`` keeps for a trial."""

    index: int
    prep: PreparedTrial
    rec: _Recorder
    result: TrialResult
    state: dict[str, Any] = field(default_factory=lambda: {
        "step": 0, "epoch": 0, "train_time": 0.0, "examples": 0})
    reference_loss: float | None = None
    active: bool = True

    def stop(self, exc: BaseException) -> None:
        """A callback raised: pruned/cancelled (``StopTrial``) or failed, record kept."""
        if isinstance(exc, StopTrial):
            self.result.status = exc.status  # type: ignore[assignment]
        else:
            self.result.status = "failed"
            self.result.error = (f"{type(exc).__name__}: {exc}\n"
                                 f"{''.join(traceback.format_exception(exc, limit=8))}")
        self.active = False

    def flush(self) -> None:
        try:
            self.rec.flush()
        except Exception as exc:  # StopTrial included: the member stops here
            self.stop(exc)


def _lr_table(members: Sequence[_Member], total: int, spe: int, epochs: int,
              dtype: torch.dtype, dev: torch.device) -> torch.Tensor:
    """``[K, total + 1]``: the rate each member uses at each step (column = steps done).

    Closed forms where the scheduler has one; otherwise its own factory is stepped over a
    dummy optimizer (the very object ``run_trial`` would build). Identical schedules are
    computed once.
    """
    plan = SchedulePlan(epochs, spe)
    cache: dict[Any, list[float]] = {}
    rows = []
    for m in members:
        hp = m.prep.scheduler_params
        lr0 = float(m.prep.optimizer_params["lr"])
        key = (m.prep.config.scheduler.name, repr(sorted(hp.items())), lr0)
        if key not in cache:
            cache[key] = _schedule(m.prep.config.scheduler.name, hp, lr0, plan, total)
        rows.append(cache[key])
    return torch.tensor(rows, dtype=dtype, device=dev)


def _schedule(name: str, hp: Mapping[str, Any], lr0: float, plan: SchedulePlan,
              total: int) -> list[float]:
    entry = SCHEDULERS.get(name)
    interval = hp["interval"]
    span = total + 1 if interval == "step" else plan.epochs + 1
    if entry.formula is not None:
        values = [entry.formula(t, lr0, hp, plan, interval) for t in range(span)]
    else:
        param = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([param], lr=lr0)
        schedule = entry.factory(opt, hp, plan, interval)
        values = []
        for _ in range(span):
            values.append(schedule.last_lr())
            opt.step()
            schedule.step()
    if interval == "step":
        return values
    return [values[min(s // plan.steps_per_epoch, plan.epochs)] for s in range(total + 1)]


class _Pack:
    """The stacked state of the members still training, and the packed step."""

    def __init__(self, members: list[_Member], masks_per_member: bool) -> None:
        first = members[0].prep
        self.members = members
        self.wl: Workload = first.workload
        self.dev = torch.device(first.config.device)
        self.first = first
        models = [m.prep.workload.init_model(m.prep.config.seed, m.prep.arch)
                  for m in members]
        # Hyperparameters in the parameters' dtype: what a Python-float scalar becomes in
        # the unpacked optimizer's arithmetic (float32 models stay float32 throughout).
        self.dtype = next(iter(models[0].parameters())).dtype
        self.template = copy.deepcopy(models[0]).to(self.dev)
        reg_ids = {id(p) for p in self.wl.regularized_parameters(models[0])}
        self.reg_names = [n for n, p in models[0].named_parameters() if id(p) in reg_ids]
        params, buffers = stack_module_state(models)
        self.params = {n: p.detach().to(self.dev) for n, p in params.items()}
        self.buffers = {n: b.to(self.dev) for n, b in buffers.items()}
        base = copy.deepcopy(models[0])
        self.drops: list[_MaskDropout] = []
        for name, module in list(base.named_modules()):
            if isinstance(module, nn.Dropout):
                drop = _MaskDropout()
                base.set_submodule(name, drop)
                self.drops.append(drop)
        self.base = base.to("meta")
        self.base.train()
        self.mask_shapes: dict[int, list[tuple[int, ...]]] = {}
        self.masks_per_member = masks_per_member and self.dev.type == "cpu"
        self.drop_gens = [torch.Generator(device=self.dev).manual_seed(m.prep.config.seed)
                          for m in members]
        if not self.masks_per_member:
            self.batch_gen = torch.Generator(device=self.dev).manual_seed(
                members[0].prep.config.seed)
        self.order_gens = [torch.Generator().manual_seed(m.prep.config.seed) for m in members]

        def hp_vec(values: Sequence[Any]) -> torch.Tensor:
            return torch.tensor([float(v) for v in values], dtype=self.dtype, device=self.dev)

        numeric = [k for k, v in first.optimizer_params.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self.hp = {k: hp_vec([m.prep.optimizer_params[k] for m in members]) for k in numeric}
        self.strength = hp_vec([m.prep.regularizer_params.get("strength", 0.0)
                                for m in members])
        #: What is recorded (float64, like ``schedule.last_lr()``) and what the updates use.
        self.lr_values = _lr_table(members, first.total_steps, first.steps_per_epoch,
                                   first.epochs, torch.float64, self.dev)
        self.lr = self.lr_values.to(self.dtype)
        self.opt_state = pack_state(first.config.optimizer.name, self.params, self.hp)
        self.rule = PACKED_RULES[first.config.optimizer.name]
        reg = first.regularizer
        self.penalty = reg.penalty
        self.reg_name = first.config.regularizer.name
        self.clip = reg.clip_at_zero
        self.grads: dict[str, torch.Tensor] = {}

        wl, reg_names, penalty = self.wl, self.reg_names, self.penalty

        def member_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                        masks: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        strength: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            for drop, mask in zip(self.drops, masks, strict=True):
                drop.mask = mask
            try:
                out = functional_call(self.base, (p, b), (x,))
            finally:
                for drop in self.drops:
                    drop.mask = None
            loss = wl.loss_fn(out, y)
            if penalty is None:
                return loss, loss
            objective = loss + penalty([p[n] for n in reg_names], {"strength": strength})
            return objective, loss

        self._grad = vmap(grad(member_loss, has_aux=True))

        def member_out(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                       x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))

        self._forward = vmap(member_out, in_dims=(0, 0, None))

    @property
    def k(self) -> int:
        return len(self.members)

    def keep(self, slots: list[int]) -> None:
        """Drop every member not in ``slots`` from the stacked state (they stop costing)."""
        idx = torch.tensor(slots, device=self.dev)

        def sel(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {n: t.index_select(0, idx) for n, t in d.items()}

        self.params, self.buffers = sel(self.params), sel(self.buffers)
        self.grads = sel(self.grads) if self.grads else {}
        self.opt_state = {key: sel(bufs) for key, bufs in self.opt_state.items()}
        self.hp = sel(self.hp)
        self.strength = self.strength.index_select(0, idx)
        self.lr = self.lr.index_select(0, idx)
        self.members = [self.members[s] for s in slots]
        self.drop_gens = [self.drop_gens[s] for s in slots]
        self.order_gens = [self.order_gens[s] for s in slots]

    def _masks(self, batch: int) -> list[torch.Tensor]:
        if not self.drops:
            return []
        if batch not in self.mask_shapes:
            x = torch.zeros((batch, *self.x_shape), dtype=self.x_dtype, device=self.dev)
            with torch.no_grad():  # a dry run of member 0 records each mask's shape
                functional_call(self.base, ({n: p[0] for n, p in self.params.items()},
                                            {n: b[0] for n, b in self.buffers.items()}), (x,))
            self.mask_shapes[batch] = [d.seen_shape or () for d in self.drops]
        p = torch.tensor([m.prep.arch.dropout for m in self.members], dtype=self.dtype,
                         device=self.dev)
        masks = []
        for shape in self.mask_shapes[batch]:
            if self.masks_per_member:
                # The very draws run_trial's nn.Dropout makes from its seeded global RNG.
                per = [torch.empty(shape, dtype=self.dtype, device=self.dev).bernoulli_(
                    1 - m.prep.arch.dropout, generator=g)
                    for m, g in zip(self.members, self.drop_gens, strict=True)]
                mask = torch.stack(per)
            else:
                u = torch.rand((self.k, *shape), dtype=self.dtype, device=self.dev,
                               generator=self.batch_gen)
                mask = (u < per_member(1 - p, u)).to(self.dtype)
            masks.append(mask / per_member(1 - p, mask))
        return masks

    def step(self, xb: torch.Tensor, yb: torch.Tensor, t: int, col: int) -> torch.Tensor:
        """One packed update (``t`` 1-based, ``col`` = steps done); returns ``[K]`` losses."""
        self.x_shape, self.x_dtype = tuple(xb.shape[2:]), xb.dtype
        masks = self._masks(int(xb.shape[1]))
        grads, loss = self._grad(self.params, self.buffers, masks, xb, yb, self.strength)
        lr = self.lr[:, col]
        with torch.no_grad():
            if self.reg_name == "weight_decay":
                for n in self.reg_names:
                    grads[n] = grads[n] + per_member(self.strength, grads[n]) * self.params[n]
            elif self.reg_name == "decoupled_weight_decay":
                for n in self.reg_names:
                    p = self.params[n]
                    p.mul_(1.0 - per_member(lr * self.strength, p))
            signs = {n: self.params[n].sign() for n in self.reg_names} if self.clip else {}
            self.rule.update(self.params, grads, self.opt_state, self.hp, lr, t)
            for n, s in signs.items():
                p = self.params[n]
                crossed = p.sign() * s < 0
                crossed |= (s == 0) & (grads[n].abs() <= per_member(self.strength, p))
                p.masked_fill_(crossed, 0.0)
        self.grads = grads
        return loss.detach()

    def grad_norms(self) -> list[float]:
        sq = sum(g.flatten(1).square().sum(1) for g in self.grads.values())
        return torch.as_tensor(sq).sqrt().tolist()

    def member_module(self, slot: int) -> nn.Module:
        """The template module holding member ``slot``'s parameters (eval, step extras)."""
        with torch.no_grad():
            for n, p in self.template.named_parameters():
                p.copy_(self.params[n][slot])
            for n, b in self.template.named_buffers():
                b.copy_(self.buffers[n][slot])
        return self.template

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
                 ) -> list[dict[str, float]]:
        """Each member's validation metrics, as ``Workload.evaluate`` computes them."""
        wl = self.wl
        if type(wl).evaluate is not Workload.evaluate:
            out = []
            for slot in range(self.k):
                model = self.member_module(slot)
                model.eval()
                out.append(wl.evaluate(model, x, y))
                model.train()
            return out
        self.base.eval()
        try:
            total = torch.zeros(self.k, device=x.device, dtype=torch.float64)
            correct = torch.zeros(self.k, device=x.device, dtype=torch.float64)
            n = int(x.shape[0])
            for start in range(0, n, batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                outs = self._forward(self.params, self.buffers, xb)
                losses = vmap(wl.loss_fn, in_dims=(0, None))(outs, yb)
                total += losses.double() * xb.shape[0]
                if wl.classification:
                    hits = (outs.argmax(-1) == yb).double().flatten(1).sum(1)
                    correct += hits / (yb.numel() / xb.shape[0])
        finally:
            self.base.train()
        losses_l = (total / n).tolist()
        accs = (correct / n).tolist()
        res = []
        for i in range(self.k):
            metrics = {"val_loss": losses_l[i]}
            if wl.classification:
                metrics["val_accuracy"] = accs[i]
            res.append(metrics)
        return res


def run_packed(
    configs: Sequence[TrialConfig | Mapping[str, Any]],
    on_metrics: Sequence[MetricsCallback | None] | None = None,
    *,
    masks_per_member: bool = True,
) -> list[TrialResult]:
    """Train ``configs`` as one pack; one ``TrialResult`` per config, in order.

    Configs that do not prepare, cannot be packed or do not share the first packable
    member's ``pack_key`` run one at a time through ``run_trial`` (the result then carries
    ``extra["pack"]["unpacked"]`` with the reason), so any list of configs gives correct
    records. Never raises for a bad run.

    Args:
        configs: The members.
        on_metrics: One callback per member (or ``None``), called like ``run_trial``'s.
        masks_per_member: Draw dropout masks from one generator per member (exactly
            ``run_trial``'s masks on CPU); otherwise in one batch (the CUDA path).
    """
    callbacks = list(on_metrics) if on_metrics is not None else [None] * len(configs)
    if len(callbacks) != len(configs):
        raise ValueError(f"{len(configs)} configs but {len(callbacks)} callbacks")
    with contextlib.suppress(Exception):
        warm_up()
    t0 = time.perf_counter()
    results: list[TrialResult | None] = [None] * len(configs)
    members: list[_Member] = []
    key: tuple[Any, ...] | None = None
    alone: list[tuple[int, str]] = []
    for i, config in enumerate(configs):
        try:
            prep = prepare_trial(config)
        except ConfigError as exc:
            alone.append((i, f"invalid config ({exc})"))
            continue
        why = _reason(prep)
        if why is None and key is not None and pack_key(prep) != key:
            why = "differs from the pack's workload, batch size, architecture or optimizer"
        if why is not None:
            alone.append((i, why))
            continue
        key = key or pack_key(prep)
        result = TrialResult(status="completed")
        members.append(_Member(i, prep, _Recorder(callbacks[i], t0), result))
    if members:
        try:
            pack = _Pack(members, masks_per_member)
        except Exception as exc:  # a model the transforms cannot take: run each alone
            why = f"packing failed ({type(exc).__name__}: {exc})"
            alone.extend((m.index, why) for m in members)
            members = []
        else:
            try:
                _train_packed(pack, members, t0)
            except Exception as exc:  # the pack's own compute failed: its live members fail
                error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
                for m in members:
                    if m.active:
                        m.result.status, m.result.error = "failed", error
    for m in members:
        results[m.index] = _finish(m, t0, len(members))
    for i, why in sorted(alone):
        res = run_trial(configs[i], callbacks[i])
        res.extra["pack"] = {"unpacked": why}
        results[i] = res
    return [r for r in results if r is not None]


def _finish(m: _Member, t0: float, size: int) -> TrialResult:
    """Close a member's record the way ``run_trial`` closes a trial's."""
    result, state = m.result, m.state
    with contextlib.suppress(Exception):
        m.rec.flush()
    result.metrics = m.rec.points
    result.steps = state["step"]
    result.epochs = max(result.epochs, state["epoch"])
    result.wall_time = time.perf_counter() - t0
    result.device = m.prep.config.device
    result.extra.setdefault("host", socket.gethostname())
    result.extra["pack"] = {"members": size}
    if state["train_time"] > 0:
        result.examples_per_sec = state["examples"] / state["train_time"]
    _summarise(result)
    return result


def _train_packed(pack: _Pack, members: list[_Member], t0: float) -> None:
    first = pack.first
    wl = first.workload
    dev = pack.dev
    data = wl.data()
    x_train, y_train = to_device(data.x_train, dev), to_device(data.y_train, dev)
    x_val, y_val = to_device(data.x_val, dev), to_device(data.y_val, dev)
    n = data.n_train
    bs, total, log_every = first.batch_size, first.total_steps, first.config.log_every
    per_step_lr = {m.index: m.prep.scheduler_params["interval"] == "step" for m in members}
    extras = type(wl).step_extras is not Workload.step_extras
    for m in members:
        cfg = m.prep.config
        target = wl.target if cfg.target is None else replace(wl.target, value=cfg.target)
        m.result.extra["resolved"] = m.prep.resolved()
        m.result.extra["target"] = {"metric": target.metric, "value": target.value,
                                    "mode": target.mode}
        m.state["target"] = target
    window = torch.zeros((pack.k, log_every), device=dev)
    in_window = 0
    step = 0
    lrs_host = pack.lr_values.tolist()

    def live() -> list[_Member]:
        return pack.members

    def compact() -> None:
        nonlocal window, lrs_host
        slots = [s for s, m in enumerate(pack.members) if m.active]
        if len(slots) < pack.k:
            idx = torch.tensor(slots, device=dev)
            window = window.index_select(0, idx)
            pack.keep(slots)
            lrs_host = [lrs_host[s] for s in slots]

    def flush_window(epoch: int) -> None:
        """Per member: read the window, detect divergence, record (one sync for all)."""
        nonlocal in_window
        values_all = window[:, :in_window].tolist()
        first_step = step - in_window + 1
        norms = pack.grad_norms() if pack.grads else None
        for slot, m in enumerate(live()):
            values = values_all[slot]
            cfg = m.prep.config
            if m.reference_loss is None and values and math.isfinite(values[0]):
                m.reference_loss = max(abs(values[0]), 1e-12)
            bound = cfg.divergence_factor * (m.reference_loss or 1.0)
            bad = next((i for i, v in enumerate(values)
                        if not math.isfinite(v) or abs(v) > bound), None)
            if bad is not None:
                m.result.status = "diverged"
                m.result.diverged_step = first_step + bad
                m.rec.add("train_loss", values[bad], first_step + bad, epoch, "step")
                m.active = False
                with contextlib.suppress(Exception):
                    m.rec.flush()
                continue
            m.rec.add("train_loss", sum(values) / len(values), step, epoch, "step")
            if norms is not None:
                m.rec.add("grad_norm", norms[slot], step, epoch, "step")
            if per_step_lr[m.index]:
                m.rec.add("lr", lrs_host[slot][step], step, epoch, "step")
            if extras:
                for k, val in wl.step_extras(pack.member_module(slot)).items():
                    m.rec.add(k, val, step, epoch, "step")
        in_window = 0

    for epoch in range(first.epochs):
        for slot, m in enumerate(live()):
            m.state["epoch"] = epoch
            m.rec.add("lr", lrs_host[slot][step], step, epoch, "epoch")
        perms = torch.stack([torch.randperm(n, generator=g) for g in pack.order_gens]).to(dev)
        epoch_loss = torch.zeros(pack.k, device=dev)
        epoch_steps = 0
        t_epoch = time.perf_counter()
        for b in range(first.steps_per_epoch):
            if step >= total:
                break
            idx = perms[:, b * bs:(b + 1) * bs]
            loss = pack.step(x_train[idx], y_train[idx], step + 1, step)
            window[:, in_window] = loss
            epoch_loss += loss
            in_window += 1
            epoch_steps += 1
            step += 1
            for m in live():
                m.state["step"] = step
                m.state["examples"] += int(idx.shape[1])
            if in_window == log_every:
                flush_window(epoch)
                for m in live():
                    if m.active:
                        m.flush()
                perms = _compact_perms(perms, live())
                epoch_loss = _compact_rows(epoch_loss, live())
                compact()
                if not pack.members:
                    return
        if in_window:
            flush_window(epoch)
        spent = time.perf_counter() - t_epoch
        for m in live():
            m.state["train_time"] += spent
        epoch_loss = _compact_rows(epoch_loss, live())
        compact()
        if not pack.members:
            return
        losses = epoch_loss.tolist()
        metrics_all = pack.evaluate(x_val, y_val)
        for slot, m in enumerate(live()):
            m.rec.add("train_loss", losses[slot] / max(epoch_steps, 1), step, epoch, "epoch")
            metrics = metrics_all[slot]
            for k, val in metrics.items():
                m.rec.add(k, val, step, epoch, "epoch")
            m.result.epochs = epoch + 1
            val_loss = metrics.get("val_loss", math.nan)
            if not math.isfinite(val_loss):
                m.result.status, m.result.diverged_step = "diverged", step
                m.active = False
                m.flush()
                continue
            target = m.state["target"]
            tv = metrics.get(target.metric)
            if m.result.step_to_target is None and tv is not None and target.reached(tv):
                m.result.step_to_target = step
                m.result.time_to_target = time.perf_counter() - t0
            m.flush()
        compact()
        if not pack.members or step >= total:
            return


def _compact_rows(t: torch.Tensor, members: Sequence[_Member]) -> torch.Tensor:
    slots = [s for s, m in enumerate(members) if m.active]
    if len(slots) == len(members):
        return t
    return t.index_select(0, torch.tensor(slots, device=t.device))


def _compact_perms(perms: torch.Tensor, members: Sequence[_Member]) -> torch.Tensor:
    return _compact_rows(perms, members)


__all__ = ["PACKABLE_REGULARIZERS", "MetricPoint", "pack_key", "pack_key_of", "packability",
           "run_packed"]
