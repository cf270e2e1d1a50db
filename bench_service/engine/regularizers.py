"""Regularizer registry: loss penalties, weight decay, and architecture options.

Regularizers act through one of three hooks, never through the workload's loss:

* ``penalty(params, hp)``: a term added to the training loss (L1, L2);
* ``before_step(params, optimizer, hp)``: applied to gradients or weights between
  ``backward()`` and ``optimizer.step()`` (coupled and decoupled weight decay), so that it
  works identically with every optimizer, Yogi and Lion included;
* ``clip_at_zero``: after the update, weights that crossed 0 are set to exactly 0 (L1);
* ``arch(hp)``: options the workload builds into its model (dropout, normalisation layers).
  A workload that cannot honour them says so when the trial is built (``check_arch``).

Every entry has one hyperparameter, its strength (``strength``; for dropout the drop
probability); normalisation layers have none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench_service.engine.config import Component
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.registry import Registry
from bench_service.engine.workloads.base import ArchOptions

Params = Sequence[torch.Tensor]


@dataclass(frozen=True)
class RegularizerEntry:
    """A registered regularizer; at most one of the hooks is usually set."""

    name: str
    description: str
    hyperparams: ParamSpace = field(default_factory=ParamSpace)
    penalty: Callable[[Params, Mapping[str, Any]], torch.Tensor] | None = None
    before_step: Callable[[Params, torch.optim.Optimizer, Mapping[str, Any]], None] | None = None
    arch: Callable[[Mapping[str, Any]], ArchOptions] | None = None
    #: Set a weight to exactly 0 when an update moves it across 0 (truncated-gradient L1,
    #: Tsuruoka et al. 2009): plain subgradient steps only hover around 0 and never reach it.
    clip_at_zero: bool = False

    def arch_options(self, hp: Mapping[str, Any]) -> ArchOptions:
        return self.arch(hp) if self.arch is not None else ArchOptions()


REGULARIZERS: Registry[RegularizerEntry] = Registry("regularizers", kind=RegularizerEntry)


def resolve_regularizer(component: Component, where: str = "regularizer") -> dict[str, Any]:
    """Validate ``component``'s params against its entry and fill in defaults."""
    entry = REGULARIZERS.get(component.name, where=f"{where}.name")
    return entry.hyperparams.resolve(component.params, f"{where}.params")


def _strength(default: float, low: float, high: float, what: str) -> ParamSpace:
    return ParamSpace((
        HyperParam("strength", default, low=low, high=high, log=True, minimum=0.0, help=what),
    ))


def _l1(params: Params, hp: Mapping[str, Any]) -> torch.Tensor:
    return hp["strength"] * sum(p.abs().sum() for p in params)


def _l2(params: Params, hp: Mapping[str, Any]) -> torch.Tensor:
    return hp["strength"] * sum(p.square().sum() for p in params)


def _coupled_decay(
    params: Params, optimizer: torch.optim.Optimizer, hp: Mapping[str, Any]
) -> None:
    # g <- g + lambda w: exactly what torch optimizers' own ``weight_decay=`` does.
    with_grad = [p for p in params if p.grad is not None]
    if with_grad and hp["strength"]:
        grads = [p.grad for p in with_grad]
        with torch.no_grad():
            torch._foreach_add_(grads, with_grad, alpha=hp["strength"])  # type: ignore[arg-type]


def _decoupled_decay(
    params: Params, optimizer: torch.optim.Optimizer, hp: Mapping[str, Any]
) -> None:
    # w <- w - lr * lambda * w before the update, as AdamW does; lr follows the schedule.
    lr = float(optimizer.param_groups[0]["lr"])
    if params and hp["strength"]:
        with torch.no_grad():
            torch._foreach_mul_(list(params), 1.0 - lr * hp["strength"])


def _norm_arch(norm: str) -> Callable[[Mapping[str, Any]], ArchOptions]:
    def arch(hp: Mapping[str, Any]) -> ArchOptions:
        return ArchOptions(norm=norm)

    return arch


REGULARIZERS.register(RegularizerEntry("none", "No regularization."))
REGULARIZERS.register(RegularizerEntry(
    "l1", "L1 penalty: loss + λ Σ|θ| over weights (not biases/norms); drives weights to 0.",
    _strength(1e-4, 1e-6, 1e-2, "λ of the L1 penalty"), penalty=_l1, clip_at_zero=True,
))
REGULARIZERS.register(RegularizerEntry(
    "l2", "L2 penalty: loss + λ Σθ² over weights (not biases/norms).",
    _strength(1e-4, 1e-6, 1e-2, "λ of the L2 penalty"), penalty=_l2,
))
REGULARIZERS.register(RegularizerEntry(
    "weight_decay",
    "Coupled weight decay: g ← g + λw before the optimizer's update (torch's weight_decay=); "
    "for plain SGD the same as an L2 penalty with λ/2.",
    _strength(5e-4, 1e-6, 1e-2, "λ of the weight decay"), before_step=_coupled_decay,
))
REGULARIZERS.register(RegularizerEntry(
    "decoupled_weight_decay",
    "Decoupled weight decay (AdamW/SGDW): w ← w − ηλw outside the adaptive step, any optimizer.",
    _strength(1e-2, 1e-5, 1e-1, "λ of the decoupled decay"), before_step=_decoupled_decay,
))
REGULARIZERS.register(RegularizerEntry(
    "dropout",
    "Dropout after hidden activations: zero each unit with probability p, scale by 1/(1−p).",
    ParamSpace((HyperParam(
        "strength", 0.2, low=0.0, high=0.6, minimum=0.0, maximum=1.0, exclusive_maximum=True,
        help="drop probability p",
    ),)),
    arch=lambda hp: ArchOptions(dropout=float(hp["strength"])),
))
for _norm, _what in (
    ("batchnorm", "BatchNorm after hidden layers (batch statistics in training, running in eval)."
     ),
    ("layernorm", "LayerNorm: normalise over the features of each sample."),
    ("groupnorm", "GroupNorm: normalise over groups of channels of each sample."),
    ("instancenorm", "InstanceNorm: normalise each channel of each sample (conv nets)."),
):
    REGULARIZERS.register(RegularizerEntry(_norm, _what, arch=_norm_arch(_norm)))
