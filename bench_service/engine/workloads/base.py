"""The workload interface: a test problem with data, a model built from a seed, and a loss.

Modelled on AlgoPerf's ``Workload``: the loss does NOT include regularization (regularizers
act through their own interface), data loading is deterministic and cached in-process, and
nothing hides global state, so that a later packed runner can stack many models with
``torch.func`` (``functional_call`` over the module built by ``init_model``).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench_service.engine.errors import ConfigError, IncompatibleError
from bench_service.engine.hparams import ParamSpace
from bench_service.vocab import Mode

NORMS = ("batchnorm", "layernorm", "groupnorm", "instancenorm")


@dataclass(frozen=True)
class Target:
    """The documented goal of a workload, used for time-to-target."""

    metric: str
    value: float
    mode: Mode = "min"

    def reached(self, value: float) -> bool:
        return value <= self.value if self.mode == "min" else value >= self.value


@dataclass(frozen=True)
class ArchOptions:
    """Architecture options set by regularizers (dropout rate, normalisation layer)."""

    dropout: float = 0.0
    norm: str | None = None


@dataclass(frozen=True)
class Dataset:
    """In-memory tensors of a workload (on CPU; the runner moves them to the device once)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    #: Further evaluation sets, evaluated like the validation set after every epoch, whose
    #: metrics are recorded with the split's name instead of ``val`` (``test`` gives
    #: ``test_loss``, ``train_eval`` gives ``train_eval_loss``): DeepOBS reports train-eval,
    #: validation and test metrics side by side, and so do the workloads that follow it.
    eval_splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


_DATA_CACHE: dict[tuple[str, tuple[tuple[str, Any], ...], torch.dtype], Dataset] = {}

#: Bytes per model parameter in training: float32 weight, gradient and two optimizer moments.
MODEL_BYTES_PER_PARAM = 16
#: Bytes of data and model a workload may need unless it says otherwise (``max_bytes``): far
#: above every built-in default, far below what a typo (``dim: 10^9``) would allocate.
DEFAULT_MAX_BYTES = 4 * 2**30


def _checking_arch(init_model: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Wrap a subclass's ``init_model`` so that ``check_arch`` always runs first."""

    @functools.wraps(init_model)
    def wrapper(self: Workload, *args: Any, **kwargs: Any) -> nn.Module:
        arch = kwargs.get("arch", args[1] if len(args) > 1 else None)
        if isinstance(arch, ArchOptions):
            self.check_arch(arch)
        return init_model(self, *args, **kwargs)

    wrapper._checks_arch = True  # type: ignore[attr-defined]
    return wrapper


class Workload(ABC):
    """Base class of every test problem.

    Subclasses set the class attributes and implement ``make_data``, ``init_model`` and
    ``loss_fn``; registering is decorating the class with ``@WORKLOADS.register`` (built-in
    workloads: in their own module of this package, which is all a new one needs). Every
    ``init_model`` checks the architecture options first (``check_arch``): the base class
    wraps it, so a subclass cannot forget to.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    hyperparams: ClassVar[ParamSpace] = ParamSpace()
    target: ClassVar[Target]
    default_batch_size: ClassVar[int] = 64
    default_epochs: ClassVar[int] = 10
    #: Whether ``val_accuracy`` makes sense (classification-like outputs).
    classification: ClassVar[bool] = False
    #: Whether the model has hidden layers where dropout can act.
    supports_dropout: ClassVar[bool] = False
    #: Normalisation layers the model can insert (subset of ``NORMS``).
    supported_norms: ClassVar[tuple[str, ...]] = ()
    #: Per-optimizer default overrides for this problem (e.g. a smaller SGD lr on Rosenbrock,
    #: whose gradients are large). Order: registry default < this < the user's params.
    optimizer_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: Whether the seed draws the initial parameters; ``False`` for problems whose start is
    #: fixed by design (the seed then only changes the batch order).
    seeded_init: ClassVar[bool] = True
    #: Upper bound of ``estimated_bytes()``; larger parameters are refused before allocating.
    max_bytes: ClassVar[int] = DEFAULT_MAX_BYTES
    #: Whether an epoch drops the last, incomplete batch (DeepOBS's data sets do: with batch
    #: 128 an epoch of the 1,000-sample quadratic is 7 steps, not 8).
    drop_last: ClassVar[bool] = False
    #: Whether the evaluation sets are also measured at the start point, before any step (as
    #: DeepOBS records: its curves have ``num_epochs + 1`` entries). Those points have step 0
    #: and epoch -1.
    evaluate_at_start: ClassVar[bool] = False
    #: Whether ``augment`` transforms every training batch (data augmentation; evaluation
    #: sets are never augmented).
    augments: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("init_model")
        if (own is not None and not getattr(own, "__isabstractmethod__", False)
                and not getattr(own, "_checks_arch", False)):
            cls.init_model = _checking_arch(own)  # type: ignore[method-assign]

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = self.hyperparams.resolve(params, "workload.params")
        self._check_size()

    def estimated_bytes(self) -> int:
        """Rough bytes of this workload's data set and model at ``self.params`` (0: unknown).

        Called before anything is allocated, so that parameters whose product is absurd
        (``n_train × dim`` of 10^14 floats) are refused with a clear message instead of
        crashing the worker. Built-in workloads whose size depends on parameters override it.
        """
        return 0

    def _check_size(self) -> None:
        need = self.estimated_bytes()
        if need > self.max_bytes:
            sized = [p.name for p in self.hyperparams if p.kind == "int"]
            raise ConfigError(
                "workload.params",
                f"{self.name} with these parameters needs about {need / 2**30:.3g} GiB for its "
                f"data and model, more than the {self.max_bytes / 2**30:g} GiB a workload may "
                f"use; make {' or '.join(sized) or 'its parameters'} smaller",
            )

    # --- data ---------------------------------------------------------------------------
    @abstractmethod
    def make_data(self) -> Dataset:
        """Build the data set deterministically (no download); called once per process."""

    def data(self) -> Dataset:
        """The cached data set of this workload and parameters, per default dtype: a workload
        that draws its data in the default dtype (the quadratic) draws other numbers under
        ``torch.set_default_dtype(torch.float64)``, and a float32 run must never see those."""
        key = (self.name, tuple(sorted(self.params.items())), torch.get_default_dtype())
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = self.make_data()
        return _DATA_CACHE[key]

    # --- model --------------------------------------------------------------------------
    def check_arch(self, arch: ArchOptions, where: str = "regularizer") -> None:
        """Raise ``IncompatibleError`` if this workload cannot honour ``arch``."""
        if arch.dropout > 0 and not self.supports_dropout:
            raise IncompatibleError(
                where, f"workload {self.name!r} has no hidden layers for dropout; use it "
                "with a workload that supports dropout (see `bench list workloads`)",
            )
        if arch.norm is not None and arch.norm not in self.supported_norms:
            can = ", ".join(self.supported_norms) or "none"
            raise IncompatibleError(
                where, f"workload {self.name!r} cannot use {arch.norm} (supports: {can})",
            )

    @abstractmethod
    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        """Build the model with parameters initialised from ``seed`` only."""

    @abstractmethod
    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch, without any regularization term."""

    def regularized_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters that penalties and weight decay act on: not biases nor norm layers."""
        norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        skip: set[int] = set()
        for module in model.modules():
            if isinstance(module, norm_types):
                skip.update(id(p) for p in module.parameters(recurse=False))
        return [
            p for n, p in model.named_parameters()
            if p.requires_grad and id(p) not in skip and not n.endswith("bias")
        ]

    # --- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
    ) -> dict[str, float]:
        """Validation metrics; default: mean loss and (for classification) accuracy."""
        total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.float64)
        n = int(x.shape[0])
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = model(xb)
            total_loss += self.loss_fn(out, yb).double() * xb.shape[0]
            if self.classification:
                correct += (out.argmax(-1) == yb).double().sum() / (yb.numel() / xb.shape[0])
        metrics = {"val_loss": float(total_loss) / n}
        if self.classification:
            metrics["val_accuracy"] = float(correct) / n
        return metrics

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A training batch as the model should see it (``augments = True``); draws only from
        ``generator`` (seeded by the trial), so runs stay reproducible."""
        return x

    def step_extras(self, model: nn.Module) -> Mapping[str, float]:
        """Extra per-record values (e.g. the parameter trajectory of a 2-d problem)."""
        return {}

    # --- helpers ------------------------------------------------------------------------
    @staticmethod
    def generator(seed: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(int(seed))
        return g

    @classmethod
    def describe(cls) -> str:
        t = cls.target
        op = "<=" if t.mode == "min" else ">="
        return f"{cls.description} Target: {t.metric} {op} {t.value:g}."


def finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf
