"""The optimizers a practitioner compares today, registered on ``OPTIMIZERS``.

Every entry builds the library's own class with the entry's hyperparameters mapped one to
one onto its keyword arguments (tests step each against the class built directly, on
identical gradients: the registry changes no arithmetic). Third-party classes are imported
on first use, so ``bench list`` does not pay for importing ``pytorch_optimizer``.

Sources and licences (README, "Modern optimizers"):

- ``torch`` (BSD-3-Clause): ``torch.optim.Muon`` (with ``torch.optim.AdamW`` beside it, see
  ``optim_muon``) and ``torch.optim.Adafactor``.
- ``schedulefree`` 1.4.1 (Apache-2.0, Meta): ``AdamWScheduleFree`` and ``SGDScheduleFree``.
- ``pytorch-optimizer`` 4.1.0 (Apache-2.0): SOAP, Shampoo, ADOPT, AdEMAMix, MARS, AdaBelief,
  Adan, LAMB, Prodigy, Kron (PSGD). The package says some of its algorithms (Fromage, Nero)
  are tied to CC BY-NC-SA 4.0, which is non-commercial: those are not registered here.

As everywhere in the registry, an entry's own weight decay is 0 (regularizers own that axis)
unless it is the algorithm's declared, decoupled hyperparameter (Muon's).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bench_service.engine.hparams import HyperParam, ParamSpace, lr_param
from bench_service.engine.optim_muon import MuonWithAdamW, muon_groups, torch_optimizer
from bench_service.engine.optimizers import (
    OPTIMIZERS,
    OptimizerEntry,
    ParamsT,
    _betas,
    _decay,
    _eps,
)

_PO = ("pytorch-optimizer", "Apache-2.0")
_SF = ("schedulefree", "Apache-2.0")


def library_class(module: str, name: str) -> Callable[..., torch.optim.Optimizer]:
    """``module.name``, imported now (third-party optimizers are imported on first use)."""
    return getattr(importlib.import_module(module), name)


def _po(name: str) -> Callable[..., torch.optim.Optimizer]:
    return library_class("pytorch_optimizer", name)


def _count(name: str, default: int, help: str, minimum: int = 1) -> HyperParam:
    return HyperParam(name, default, kind="int", minimum=minimum, help=help)


def _flag(name: str, default: bool, help: str) -> HyperParam:
    return HyperParam(name, default, kind="bool", help=help)


def _register(
    name: str, description: str, params: tuple[HyperParam, ...],
    factory: Callable[[ParamsT, Mapping[str, Any]], torch.optim.Optimizer],
    update_rule: str, source: tuple[str, str], **kwargs: Any,
) -> None:
    OPTIMIZERS.register(OptimizerEntry(
        name, description, ParamSpace(params), factory, update_rule=update_rule,
        source=source[0], license=source[1], **kwargs,
    ))


# --- torch -----------------------------------------------------------------------------------


def _muon_kwargs(hp: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments of ``torch.optim.Muon`` and of the ``torch.optim.AdamW`` beside it."""
    muon = {
        "lr": hp["lr"], "momentum": hp["momentum"], "nesterov": hp["nesterov"],
        "ns_steps": hp["ns_steps"], "weight_decay": hp["weight_decay"],
        "adjust_lr_fn": hp["adjust_lr_fn"],
    }
    adamw = {
        "lr": hp["adamw_lr"], "betas": (hp["beta1"], hp["beta2"]), "eps": hp["eps"],
        "weight_decay": hp["weight_decay"],
    }
    return muon, adamw


def _muon(params: ParamsT, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    muon, adamw = _muon_kwargs(hp)
    return MuonWithAdamW(params, muon, adamw)


_register(
    "muon",
    "Muon (torch.optim.Muon) on the hidden 2-D weight matrices (every nn.Linear but the "
    "output head), AdamW on embeddings, head, norms and biases; refused on models without a "
    "hidden matrix.",
    (
        lr_param(0.02, 1e-3, 0.2),
        _decay("momentum", 0.95, 0.8, 0.99, "Muon's momentum"),
        _flag("nesterov", True, "Nesterov momentum before orthogonalising"),
        _count("ns_steps", 5, "Newton-Schulz iterations"),
        HyperParam("adjust_lr_fn", "original", kind="choice",
                   choices=("original", "match_rms_adamw"),
                   help="Muon's per-matrix lr scaling: max(1, rows/cols)^½ or 0.2·√max(rows, "
                        "cols) (AdamW-matched RMS)"),
        HyperParam("adamw_lr", 1e-3, low=1e-5, high=1e-1, log=True, minimum=0.0,
                   exclusive_minimum=True, help="lr of the AdamW part (embeddings, head, ...)"),
        *_betas(0.9, 0.95),
        _eps(1e-8, 1e-10, 1e-4),
        HyperParam("weight_decay", 0.0, minimum=0.0,
                   help="decoupled decay of both parts (w ← w - η λ w; not tuned by default)"),
    ),
    _muon,
    "Muon: B ← μ B + G ; O = NewtonSchulz5(G + μ B if nesterov else B) ; "
    "W ← W - η·max(1, rows/cols)^½ O ; AdamW (adamw_lr, β1, β2) on every other parameter",
    ("torch", "BSD-3-Clause"),
    param_groups=muon_groups,
)

_register(
    "adafactor",
    "Adafactor (torch.optim.Adafactor): factored second moments (row and column means) for "
    "matrices, relative step sizes, no first moment.",
    (
        lr_param(1e-2, 1e-4, 1.0),
        HyperParam("beta2_decay", -0.8, low=-1.0, high=-0.5, maximum=0.0,
                   help="β2_t = 1 - t^beta2_decay"),
        HyperParam("d", 1.0, minimum=0.0, help="update clipping threshold"),
        HyperParam("eps2", 1e-3, log=True, minimum=0.0,
                   help="relative-step floor ε2 (ε1 left to torch)"),
    ),
    lambda params, hp: torch_optimizer("Adafactor", "2.5")(
        params, lr=hp["lr"], beta2_decay=hp["beta2_decay"], d=hp["d"], eps=(None, hp["eps2"]),
    ),
    "R ← β2 R + (1-β2) rowmean(G²) ; C ← β2 C + (1-β2) colmean(G²) ; V = R Cᵀ / sum(R) ; "
    "U = G/√V ; W ← W - η max(ε2, RMS(W)) U / max(1, RMS(U)/d)",
    ("torch", "BSD-3-Clause"),
)


# --- schedule-free ---------------------------------------------------------------------------
_SF_NOTE = (
    " Its schedule axis is constant with warm-up by construction (the optimizer averages its "
    "iterates instead of decaying lr; warm-up is its own warmup_steps): only scheduler "
    "'constant' is accepted. The runner evaluates at the averaged point (optimizer.eval())."
)
_SF_COMMON = (
    _count("warmup_steps", 0, "linear lr warm-up steps inside the optimizer", minimum=0),
    HyperParam("r", 0.0, minimum=0.0, help="polynomial weighting of the average (0: uniform)"),
    HyperParam("weight_lr_power", 2.0, minimum=0.0,
               help="power of lr in the averaging weights"),
)


def _schedule_free(cls: str, **keys: str) -> Callable[[ParamsT, Mapping[str, Any]],
                                                        torch.optim.Optimizer]:
    def build(params: ParamsT, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
        kwargs = {k: hp[k] for k in ("lr", "warmup_steps", "r", "weight_lr_power")}
        if "betas" in keys:
            kwargs |= {"betas": (hp["beta1"], hp["beta2"]), "eps": hp["eps"]}
        if "momentum" in keys:
            kwargs["momentum"] = hp["momentum"]
        opt = library_class("schedulefree", cls)(params, **kwargs)
        opt.train()  # type: ignore[attr-defined]  # ready to step, as the runner expects
        return opt

    return build


_register(
    "schedule_free_adamw",
    "Schedule-Free AdamW (Defazio et al. 2024; schedulefree.AdamWScheduleFree)." + _SF_NOTE,
    (lr_param(2.5e-3, 1e-5, 1e-1), *_betas(), _eps(1e-8, 1e-10, 1e-4), *_SF_COMMON),
    _schedule_free("AdamWScheduleFree", betas="y"),
    "y = (1-β1) z + β1 x ; z ← z - η ∇f(y)/(√v̂ + ε) ; x ← (1-c) x + c z, c = η²/Σ η² "
    "(train at y, evaluate at x)",
    _SF, train_eval_modes=True, schedulers=("constant",),
)
_register(
    "schedule_free_sgd",
    "Schedule-Free SGD (Defazio et al. 2024; schedulefree.SGDScheduleFree)." + _SF_NOTE,
    (lr_param(1.0, 1e-3, 10.0), _decay("momentum", 0.9, 0.5, 0.99, "interpolation β"),
     *_SF_COMMON),
    _schedule_free("SGDScheduleFree", momentum="y"),
    "y = (1-β) z + β x ; z ← z - η ∇f(y) ; x ← (1-c) x + c z, c = η²/Σ η² "
    "(train at y, evaluate at x)",
    _SF, train_eval_modes=True, schedulers=("constant",),
)


# --- pytorch-optimizer -----------------------------------------------------------------------
_register(
    "soap",
    "SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's preconditioner.",
    (lr_param(3e-3, 1e-5, 1e-1), *_betas(0.95, 0.95), _eps(1e-8, 1e-10, 1e-4),
     _count("precondition_frequency", 10, "steps between eigenbasis updates")),
    lambda params, hp: _po("SOAP")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        precondition_frequency=hp["precondition_frequency"], weight_decay=0.0,
    ),
    "L ← β2 L + (1-β2) G Gᵀ ; R ← β2 R + (1-β2) Gᵀ G ; Q_L, Q_R = eig(L), eig(R) every f "
    "steps ; Adam on G' = Q_Lᵀ G Q_R ; W ← W - η Q_L Adam(G') Q_Rᵀ",
    _PO,
)
_register(
    "shampoo",
    "Shampoo (Gupta et al. 2018): Kronecker-factored full-matrix preconditioning.",
    (lr_param(1e-3, 1e-5, 1e-1),
     HyperParam("momentum", 0.0, minimum=0.0, maximum=1.0, exclusive_maximum=True,
                help="momentum on the preconditioned step (not tuned by default)"),
     _count("preconditioning_compute_steps", 1, "steps between inverse-root updates"),
     HyperParam("matrix_eps", 1e-6, log=True, minimum=0.0, help="ε of the matrix roots")),
    lambda params, hp: _po("Shampoo")(
        params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=0.0,
        preconditioning_compute_steps=hp["preconditioning_compute_steps"],
        matrix_eps=hp["matrix_eps"],
    ),
    "L ← L + G Gᵀ ; R ← R + Gᵀ G ; W ← W - η L^-¼ G R^-¼",
    _PO,
)
_register(
    "adopt",
    "ADOPT (Taniguchi et al. 2024): Adam normalised by the previous second moment, "
    "momentum after normalisation; converges for any β2.",
    (lr_param(1e-3, 1e-5, 1e-1), *_betas(0.9, 0.9999), _eps(1e-6, 1e-10, 1e-4)),
    lambda params, hp: _po("ADOPT")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=0.0,
    ),
    "m ← β1 m + (1-β1) clip(g / max(√v, ε)) ; w ← w - η m ; v ← β2 v + (1-β2) g²",
    _PO,
)
_register(
    "ademamix",
    "AdEMAMix (Pagliardini et al. 2024): Adam plus a slow EMA of gradients (β3) mixed in "
    "with weight alpha.",
    (lr_param(1e-3, 1e-5, 1e-1), *_betas(),
     _decay("beta3", 0.9999, 0.999, 0.99999, "decay rate of the slow EMA"),
     HyperParam("alpha", 5.0, low=1.0, high=10.0, minimum=0.0, help="weight of the slow EMA"),
     HyperParam("t_alpha_beta3", None, kind="int", minimum=1,
                help="warm-up steps of alpha and beta3 (none: no warm-up)"),
     _eps(1e-8, 1e-10, 1e-4)),
    lambda params, hp: _po("AdEMAMix")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"], hp["beta3"]),
        alpha=hp["alpha"], t_alpha_beta3=hp["t_alpha_beta3"], eps=hp["eps"], weight_decay=0.0,
    ),
    f"{'m1 ← β1 m1 + (1-β1) g ; m2 ← β3 m2 + (1-β3) g ; s ← β2 s + (1-β2) g²'} ; "
    "w ← w - η (m̂1 + α m2) / (√ŝ + ε)",
    _PO,
)
_register(
    "mars",
    "MARS (Yuan et al. 2024): variance-reduced gradient (scaled gradient difference) fed to "
    "AdamW; 1-D parameters get plain AdamW (lr_1d, MARS' default).",
    (lr_param(3e-3, 1e-5, 1e-1), *_betas(0.95, 0.99),
     HyperParam("gamma", 0.025, low=0.005, high=0.1, log=True, minimum=0.0,
                help="scale of the gradient correction"),
     HyperParam("mars_type", "adamw", kind="choice", choices=("adamw", "lion", "shampoo"),
                help="the update the corrected gradient drives"),
     HyperParam("lr_1d", 3e-3, minimum=0.0, exclusive_minimum=True,
                help="lr of the AdamW step on 1-D parameters (scaled with lr by schedules)"),
     _eps(1e-8, 1e-10, 1e-4)),
    lambda params, hp: _po("MARS")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), gamma=hp["gamma"],
        mars_type=hp["mars_type"], lr_1d=hp["lr_1d"], eps=hp["eps"], weight_decay=0.0,
        weight_decay_1d=0.0,
    ),
    "c = g + γ β1/(1-β1) (g - g_prev) clipped to norm 1 ; AdamW(c)",
    _PO,
)
_register(
    "adabelief",
    "AdaBelief (Zhuang et al. 2020): Adam whose second moment tracks (g - m)², the belief "
    "in the gradient.",
    (lr_param(1e-3, 1e-5, 1e-1), *_betas(), _eps(1e-16, 1e-18, 1e-8),
     _flag("rectify", False, "RAdam-style rectification")),
    lambda params, hp: _po("AdaBelief")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        rectify=hp["rectify"], weight_decay=0.0,
    ),
    "m ← β1 m + (1-β1) g ; s ← β2 s + (1-β2) (g - m)² + ε ; w ← w - η m̂ / (√ŝ + ε)",
    _PO,
)
_register(
    "adan",
    "Adan (Xie et al. 2022): adaptive Nesterov momentum from EMAs of the gradient, its "
    "difference and the squared Nesterov gradient.",
    (lr_param(1e-3, 1e-5, 1e-1),
     _decay("beta1", 0.98, 0.9, 0.99, "decay rate of the gradient EMA"),
     _decay("beta2", 0.92, 0.8, 0.99, "decay rate of the gradient-difference EMA"),
     _decay("beta3", 0.99, 0.9, 0.999, "decay rate of the squared-gradient EMA"),
     _eps(1e-8, 1e-10, 1e-4)),
    lambda params, hp: _po("Adan")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"], hp["beta3"]), eps=hp["eps"],
        weight_decay=0.0,
    ),
    "m ← β1 m + (1-β1) g ; v ← β2 v + (1-β2)(g - g_prev) ; n ← β3 n + (1-β3)(g + β2(g - "
    "g_prev))² ; w ← w - η (m̂ + β2 v̂) / (√n̂ + ε)",
    _PO,
)
_register(
    "lamb",
    "LAMB (You et al. 2019): Adam step rescaled per layer by the trust ratio ‖w‖/‖step‖.",
    (lr_param(1e-3, 1e-5, 1e-1), *_betas(), _eps(1e-6, 1e-10, 1e-4),
     HyperParam("max_grad_norm", 1.0, minimum=0.0,
                help="global gradient-norm clipping before the step (0: none)")),
    lambda params, hp: _po("Lamb")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        max_grad_norm=hp["max_grad_norm"], weight_decay=0.0,
    ),
    "u = m̂ / (√ŝ + ε) ; w ← w - η (‖w‖ / ‖u‖) u",
    _PO,
)
_register(
    "prodigy",
    "Prodigy (Mishchenko & Defazio 2023): Adam with a learned step-size estimate d; lr is a "
    "multiplier of d (1 = as estimated).",
    (lr_param(1.0, 0.1, 10.0), *_betas(),
     HyperParam("d0", 1e-6, log=True, minimum=0.0, exclusive_minimum=True,
                help="initial estimate of the distance to the solution"),
     HyperParam("d_coef", 1.0, low=0.1, high=10.0, log=True, minimum=0.0,
                exclusive_minimum=True, help="multiplier of the d estimate"),
     _flag("safeguard_warmup", False, "leave lr out of the d update during warm-up"),
     _flag("bias_correction", False, "Adam's bias correction"),
     _eps(1e-8, 1e-10, 1e-4)),
    lambda params, hp: _po("Prodigy")(
        params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), d0=hp["d0"],
        d_coef=hp["d_coef"], safeguard_warmup=hp["safeguard_warmup"],
        bias_correction=hp["bias_correction"], eps=hp["eps"], weight_decay=0.0,
    ),
    "d ← max(d, ‖Σ d_k η_k g_k‖-based estimate) ; Adam with step η d",
    _PO,
)
_register(
    "kron",
    "Kron / PSGD (Li 2015; Kronecker-factored preconditioner fitted by stochastic "
    "gradient descent on its own criterion); preconditioner updates are randomised "
    "(seeded by the trial).",
    (lr_param(1e-3, 1e-5, 1e-1),
     _decay("momentum", 0.9, 0.5, 0.99, "momentum coefficient β"),
     HyperParam("max_size_triangular", 8192, kind="int", minimum=1,
                help="larger dimensions get a diagonal preconditioner"),
     HyperParam("memory_save_mode", None, kind="choice",
                choices=(None, "one_diag", "smart_one_diag", "all_diag"),
                help="which factors to keep diagonal (none: all triangular)")),
    lambda params, hp: _po("Kron")(
        params, lr=hp["lr"], momentum=hp["momentum"],
        max_size_triangular=hp["max_size_triangular"],
        memory_save_mode=hp["memory_save_mode"], weight_decay=0.0,
    ),
    "m ← β m + (1-β) g ; Q ← Q - η_Q ∇‖Q(P h) - Q⁻ᵀ v‖ (with probability p_t) ; "
    "w ← w - η Qᵀ Q m",
    _PO,
)
