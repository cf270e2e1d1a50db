"""Optimizer registry: every optimizer the service can benchmark, found by name.

Each entry declares its hyperparameters (defaults, validity bounds, search ranges with ``lr``
on a log scale) and a factory that builds a ``torch.optim.Optimizer`` from parameters and a
resolved hyperparameter dict. The update rule is written out in ``update_rule`` so that the
docs, and a later packed (vmapped) runner, have it explicitly.

Adding an optimizer = one ``OPTIMIZERS.register(OptimizerEntry(...))`` here (or in a plug-in
through the ``bench_service.optimizers`` entry-point group, docs/plugins.md); the tests
parametrise over every built-in name (``OPTIMIZERS.builtin_names()``), so a new entry is tested
the moment it is registered, and nothing else lists the optimizers.

No entry passes ``weight_decay`` (except AdamW's own decoupled decay): regularizers apply weight
decay generically in the runner, so that an optimizer and a regularizer are separate axes. Torch
optimizers are built with ``foreach`` left to torch (``None``): it picks the vectorised
``_foreach`` implementation when the parameters live on CUDA and the per-tensor loop on CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from bench_service.engine.config import Component
from bench_service.engine.hparams import HyperParam, ParamSpace, lr_param
from bench_service.engine.optim_lion import Lion
from bench_service.engine.optim_yogi import Yogi
from bench_service.engine.registry import Registry

ParamsT = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


@dataclass(frozen=True)
class OptimizerEntry:
    """A registered optimizer."""

    name: str
    description: str
    hyperparams: ParamSpace
    factory: Callable[[ParamsT, Mapping[str, Any]], torch.optim.Optimizer]
    update_rule: str = ""
    #: Where the implementation comes from (a pip distribution, or ``bench_service``).
    source: str = "torch"
    #: SPDX licence of that implementation.
    license: str = "BSD-3-Clause"
    #: Param groups from the model (``model -> groups``), e.g. Muon's hidden matrices vs the
    #: rest; it raises ``IncompatibleError`` for a model the optimizer is not meant for. The
    #: runner checks it before training (``prepare_trial``) and builds with its groups.
    param_groups: Callable[[torch.nn.Module], list[dict[str, Any]]] | None = None
    #: The optimizer keeps separate train/eval points (schedule-free): the runner calls
    #: ``optimizer.eval()`` around every evaluation and ``optimizer.train()`` after it.
    train_eval_modes: bool = False
    #: Schedulers it may be combined with (``None``: any); others are refused up front.
    schedulers: tuple[str, ...] | None = None


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizers", kind=OptimizerEntry)


def resolve_optimizer(component: Component, where: str = "optimizer") -> dict[str, Any]:
    """Validate ``component``'s params against its entry and fill in defaults."""
    entry = OPTIMIZERS.get(component.name, where=f"{where}.name")
    return entry.hyperparams.resolve(component.params, f"{where}.params")


def build_optimizer(
    component: Component, params: ParamsT, where: str = "optimizer"
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``component`` over ``params``."""
    entry = OPTIMIZERS.get(component.name, where=f"{where}.name")
    hp = entry.hyperparams.resolve(component.params, f"{where}.params")
    return entry.factory(params, hp)


# --- registrations (one entry each) ---------------------------------------------------------


def _decay(name: str, default: float, low: float, high: float, help: str) -> HyperParam:
    """A decay rate (momentum, β, rho, alpha): valid in [0, 1), searched linearly."""
    return HyperParam(
        name,
        default,
        low=low,
        high=high,
        minimum=0.0,
        maximum=1.0,
        exclusive_maximum=True,
        help=help,
    )


def _eps(default: float, low: float, high: float) -> HyperParam:
    """The denominator's stabilising constant: non-negative, not tuned by default.

    ``low``/``high`` document a sensible range; a sweep's ``search_space`` can tune it, but
    equal-budget comparisons (DeepOBS, AlgoPerf) leave eps at its default.
    """
    del low, high
    return HyperParam(
        "eps",
        default,
        log=True,
        minimum=0.0,
        help="added to the denominator for numerical stability",
    )


def _betas(beta1: float = 0.9, beta2: float = 0.999) -> tuple[HyperParam, HyperParam]:
    """Adam-style (β1, β2), declared separately so that each can be searched on its own."""
    return (
        _decay("beta1", beta1, 0.5, 0.99, "decay rate of the first moment"),
        _decay("beta2", beta2, 0.9, 0.9999, "decay rate of the second moment"),
    )


def _adam_space(lr: float, *extra: HyperParam) -> ParamSpace:
    """lr, beta1, beta2, eps (+ extras): the space shared by the Adam family."""
    return ParamSpace((lr_param(lr, 1e-5, 1e-1), *_betas(), _eps(1e-8, 1e-10, 1e-4), *extra))


def _adam_kwargs(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Map our flat beta1/beta2 onto torch's ``betas`` tuple."""
    return {"lr": hp["lr"], "betas": (hp["beta1"], hp["beta2"]), "eps": hp["eps"]}


_ADAM = "m ← β1 m + (1-β1) g ; s ← β2 s + (1-β2) g² ; m̂ = m/(1-β1^t) ; ŝ = s/(1-β2^t)"
_MOMENTUM = _decay("momentum", 0.9, 0.5, 0.99, "momentum coefficient β")

# Momentum and Nesterov default to lr 0.01 so that their effective step η/(1-β) = 0.1 matches
# plain SGD's default.
OPTIMIZERS.register(
    OptimizerEntry(
        "sgd",
        "Plain (mini-batch) gradient descent, torch SGD with momentum 0.",
        ParamSpace((lr_param(0.1, 1e-4, 1.0),)),
        lambda params, hp: torch.optim.SGD(params, lr=hp["lr"], momentum=0.0),
        update_rule="w ← w - η g",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "momentum",
        "Heavy-ball momentum, torch SGD(momentum=β, dampening=0).",
        ParamSpace((lr_param(0.01, 1e-4, 1.0), _MOMENTUM)),
        lambda params, hp: torch.optim.SGD(
            params, lr=hp["lr"], momentum=hp["momentum"], dampening=0.0
        ),
        update_rule="v ← β v + g ; w ← w - η v",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "nesterov",
        "Nesterov momentum, torch SGD(momentum=β, nesterov=True).",
        # torch rejects nesterov=True with momentum 0, so 0 is invalid here.
        ParamSpace((lr_param(0.01, 1e-4, 1.0), replace(_MOMENTUM, exclusive_minimum=True))),
        lambda params, hp: torch.optim.SGD(
            params, lr=hp["lr"], momentum=hp["momentum"], dampening=0.0, nesterov=True
        ),
        update_rule="v ← β v + g ; w ← w - η (g + β v)",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "adagrad",
        "AdaGrad: per-coordinate rates from the sum of squared gradients.",
        ParamSpace((lr_param(0.01, 1e-4, 1.0), _eps(1e-10, 1e-10, 1e-4))),
        lambda params, hp: torch.optim.Adagrad(params, lr=hp["lr"], eps=hp["eps"]),
        update_rule="s ← s + g⊙g ; w ← w - η g / (√s + ε)",
    )
)
# RMSProp defaults to lr 1e-3 (Keras/TF) rather than torch's 0.01, which often diverges on
# deep networks: its first step is η/√(1-alpha) = 10 η per coordinate.
OPTIMIZERS.register(
    OptimizerEntry(
        "rmsprop",
        "RMSProp: the gradient scaled by an EMA of squared gradients.",
        ParamSpace(
            (
                lr_param(1e-3, 1e-5, 1e-1),
                _decay("alpha", 0.99, 0.9, 0.999, "decay rate of the squared-gradient EMA"),
                _eps(1e-8, 1e-10, 1e-4),
                HyperParam(
                    "momentum",
                    0.0,
                    minimum=0.0,
                    maximum=1.0,
                    exclusive_maximum=True,
                    help="momentum on the scaled step (not tuned by default)",
                ),
            )
        ),
        lambda params, hp: torch.optim.RMSprop(
            params, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"], momentum=hp["momentum"]
        ),
        update_rule="s ← alpha s + (1-alpha) g⊙g ; b ← μ b + g / (√s + ε) ; w ← w - η b",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "adadelta",
        "Adadelta: step sizes from EMAs of squared gradients and squared updates.",
        ParamSpace(
            (
                lr_param(1.0, 1e-2, 10.0),
                _decay("rho", 0.9, 0.8, 0.99, "decay rate of both EMAs"),
                _eps(1e-6, 1e-8, 1e-3),
            )
        ),
        lambda params, hp: torch.optim.Adadelta(params, lr=hp["lr"], rho=hp["rho"], eps=hp["eps"]),
        update_rule=(
            "s ← rho s + (1-rho) g² ; g' ← √(Δ+ε)/√(s+ε) ⊙ g ; w ← w - η g' ; "
            "Δ ← rho Δ + (1-rho) g'²"
        ),
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "adam",
        "Adam: bias-corrected EMAs of the gradient and its square.",
        _adam_space(1e-3),
        lambda params, hp: torch.optim.Adam(params, **_adam_kwargs(hp)),
        update_rule=f"{_ADAM} ; w ← w - η m̂ / (√ŝ + ε)",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "adamw",
        "AdamW: Adam with decoupled weight decay applied outside the adaptive step.",
        _adam_space(
            1e-3,
            HyperParam(
                "weight_decay",
                0.01,
                low=1e-5,
                high=1e-1,
                log=True,
                minimum=0.0,
                help="decoupled decay λ (w ← w - η λ w)",
            ),
        ),
        lambda params, hp: torch.optim.AdamW(
            params, weight_decay=hp["weight_decay"], **_adam_kwargs(hp)
        ),
        update_rule=f"w ← w - η λ w ; {_ADAM} ; w ← w - η m̂ / (√ŝ + ε)",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "nadam",
        "NAdam: Adam with Nesterov momentum (torch's momentum-decay schedule μ_t).",
        _adam_space(2e-3),
        lambda params, hp: torch.optim.NAdam(params, **_adam_kwargs(hp)),
        update_rule=(
            f"{_ADAM} ; w ← w - η (μ_{{t+1}} m/(1-Πμ_{{≤t+1}}) + (1-μ_t) g/(1-Πμ_{{≤t}})) "
            "/ (√ŝ + ε)"
        ),
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "radam",
        "RAdam: Adam with a rectified variance term (SGD with momentum while it is unreliable).",
        _adam_space(1e-3),
        lambda params, hp: torch.optim.RAdam(params, **_adam_kwargs(hp)),
        update_rule=(
            f"{_ADAM} ; rho_t = rho_inf - 2t β2^t/(1-β2^t) ; "
            "w ← w - η r_t m̂ / (√ŝ + ε) if rho_t > 5 else w ← w - η m̂"
        ),
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "adamax",
        "Adamax: Adam with the infinity norm in place of the second moment.",
        _adam_space(2e-3),
        lambda params, hp: torch.optim.Adamax(params, **_adam_kwargs(hp)),
        update_rule="m ← β1 m + (1-β1) g ; u ← max(β2 u, |g| + ε) ; w ← w - η m / ((1-β1^t) u)",
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "yogi",
        "Yogi: Adam with an additive, sign-controlled second-moment update (Zaheer et al. 2018).",
        ParamSpace((
            lr_param(1e-2, 1e-5, 1e-1), *_betas(), _eps(1e-3, 1e-6, 1e-1),
            HyperParam(
                "initial_accumulator", 1e-6, minimum=0.0,
                help="m₀ = s₀ (1e-6 as torch_optimizer / pytorch_optimizer / TF-Addons' s₀)",
            ),
        )),
        source="bench_service",
        license="Apache-2.0",
        factory=lambda params, hp: Yogi(
            params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
            initial_accumulator=hp["initial_accumulator"],
        ),
        update_rule=(
            "m ← β1 m + (1-β1) g ; s ← s - (1-β2) sgn(s - g²) g² ; m̂ = m/(1-β1^t) ; "
            "ŝ = s/(1-β2^t) ; w ← w - η m̂ / (√ŝ + ε) ; m₀ = s₀ = initial_accumulator"
        ),
    )
)
OPTIMIZERS.register(
    OptimizerEntry(
        "lion",
        "Lion: sign of an interpolated momentum, every coordinate moves by η (Chen et al. 2023).",
        ParamSpace((lr_param(1e-4, 1e-6, 1e-2), *_betas(0.9, 0.99))),
        lambda params, hp: Lion(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"])),
        update_rule="c = β1 m + (1-β1) g ; w ← w - η sgn(c) ; m ← β2 m + (1-β2) g",
        source="bench_service",
        license="Apache-2.0",
    )
)


# The 2024-2026 optimizers (Muon, Adafactor, schedule-free, pytorch-optimizer's) live in their
# own module; importing it registers them after the classics above.
from bench_service.engine import optimizers_modern  # noqa: E402, F401
