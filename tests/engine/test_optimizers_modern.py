"""The modern optimizers: each is its library's class, Muon's split, where each is refused.

Every entry of ``optimizers_modern`` is stepped beside its library's class built directly
(the keyword arguments written out here, independently of the registry) on identical
gradients, and must land on bit-identical parameters. A new entry without a reference here
fails ``test_every_modern_entry_has_a_reference``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import pytorch_optimizer as po
import schedulefree
import torch

from bench_service.engine.config import Component
from bench_service.engine.errors import IncompatibleError
from bench_service.engine.optim_muon import hidden_matrices, muon_groups
from bench_service.engine.optimizers import OPTIMIZERS, build_optimizer
from bench_service.engine.runner import prepare_trial, run_trial
from bench_service.engine.workloads import ArchOptions, build_workload

#: The course-notes optimizers (tested in test_optimizers.py); every other entry is modern.
CLASSIC = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
           "nadam", "radam", "adamax", "yogi", "lion"}
MODERN = [n for n in OPTIMIZERS.builtin_names() if n not in CLASSIC]

Ref = Callable[[list[torch.Tensor]], list[torch.optim.Optimizer]]


def _muon_ref(ps: list[torch.Tensor]) -> list[torch.optim.Optimizer]:
    matrices = [p for p in ps if p.ndim == 2]
    rest = [p for p in ps if p.ndim != 2]
    return [
        torch.optim.Muon(matrices, lr=0.05, momentum=0.9, nesterov=False, ns_steps=4,
                         weight_decay=0.01, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(rest, lr=3e-3, betas=(0.8, 0.9), eps=1e-7, weight_decay=0.01),
    ]


def _sf_train(opt: Any) -> torch.optim.Optimizer:
    opt.train()
    return opt  # type: ignore[no-any-return]


#: name -> (registry params, the library's class built directly).
REFERENCES: dict[str, tuple[dict[str, Any], Ref]] = {
    "muon": ({"lr": 0.05, "momentum": 0.9, "nesterov": False, "ns_steps": 4,
              "weight_decay": 0.01, "adjust_lr_fn": "match_rms_adamw", "adamw_lr": 3e-3,
              "beta1": 0.8, "beta2": 0.9, "eps": 1e-7}, _muon_ref),
    "adafactor": ({"lr": 0.02, "beta2_decay": -0.7, "d": 2.0, "eps2": 1e-2},
                  lambda ps: [torch.optim.Adafactor(ps, lr=0.02, beta2_decay=-0.7, d=2.0,
                                                    eps=(None, 1e-2))]),
    "schedule_free_adamw": (
        {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "warmup_steps": 2, "r": 0.5,
         "weight_lr_power": 1.0},
        lambda ps: [_sf_train(schedulefree.AdamWScheduleFree(
            ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7, warmup_steps=2, r=0.5,
            weight_lr_power=1.0))]),
    "schedule_free_sgd": (
        {"lr": 0.5, "momentum": 0.8, "warmup_steps": 3},
        lambda ps: [_sf_train(schedulefree.SGDScheduleFree(ps, lr=0.5, momentum=0.8,
                                                           warmup_steps=3))]),
    "soap": ({"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "precondition_frequency": 2},
             lambda ps: [po.SOAP(ps, lr=0.01, betas=(0.9, 0.99), precondition_frequency=2,
                                 weight_decay=0.0)]),
    "shampoo": ({"lr": 0.01, "momentum": 0.5, "preconditioning_compute_steps": 2},
                lambda ps: [po.Shampoo(ps, lr=0.01, momentum=0.5,
                                       preconditioning_compute_steps=2)]),
    "adopt": ({"lr": 0.01, "beta1": 0.8, "beta2": 0.999},
              lambda ps: [po.ADOPT(ps, lr=0.01, betas=(0.8, 0.999))]),
    "ademamix": ({"lr": 0.01, "alpha": 3.0, "beta3": 0.999, "t_alpha_beta3": 4},
                 lambda ps: [po.AdEMAMix(ps, lr=0.01, betas=(0.9, 0.999, 0.999), alpha=3.0,
                                         t_alpha_beta3=4)]),
    "mars": ({"lr": 0.01, "gamma": 0.05, "lr_1d": 0.02},
             lambda ps: [po.MARS(ps, lr=0.01, gamma=0.05, lr_1d=0.02, weight_decay_1d=0.0)]),
    "adabelief": ({"lr": 0.01, "rectify": True},
                  lambda ps: [po.AdaBelief(ps, lr=0.01, rectify=True, weight_decay=0.0)]),
    "adan": ({"lr": 0.01, "beta1": 0.9, "beta2": 0.9, "beta3": 0.999},
             lambda ps: [po.Adan(ps, lr=0.01, betas=(0.9, 0.9, 0.999))]),
    "lamb": ({"lr": 0.01, "max_grad_norm": 0.5},
             lambda ps: [po.Lamb(ps, lr=0.01, max_grad_norm=0.5, weight_decay=0.0)]),
    "prodigy": ({"lr": 0.5, "d0": 1e-4, "safeguard_warmup": True},
                lambda ps: [po.Prodigy(ps, lr=0.5, d0=1e-4, safeguard_warmup=True,
                                       weight_decay=0.0)]),
    "kron": ({"lr": 0.01, "momentum": 0.8, "max_size_triangular": 6},
             lambda ps: [po.Kron(ps, lr=0.01, momentum=0.8, max_size_triangular=6,
                                 weight_decay=0.0)]),
}


def test_every_modern_entry_has_a_reference() -> None:
    assert sorted(MODERN) == sorted(REFERENCES)
    for name in MODERN:
        entry = OPTIMIZERS.get(name)
        assert entry.source and entry.license and "NC" not in entry.license


def _params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(8, 5, generator=gen), torch.randn(5, generator=gen),
            torch.randn(3, 4, generator=gen)]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_registry_builds_the_librarys_own_arithmetic(name: str) -> None:
    params, reference = REFERENCES[name]
    ours, theirs = _params(), _params()
    torch.manual_seed(0)
    np.random.seed(0)
    opt = build_optimizer(Component(name, params), ours)
    torch.manual_seed(0)
    np.random.seed(0)
    refs = reference(theirs)
    gen = torch.Generator().manual_seed(2)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        torch.manual_seed(100 + step)
        np.random.seed(100 + step)
        opt.step()
        torch.manual_seed(100 + step)
        np.random.seed(100 + step)
        for ref in refs:
            ref.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert any(not torch.equal(p, q) for p, q in zip(ours, _params(), strict=True))


# --- Muon: which parameters go where ---------------------------------------------------------


def test_muon_split_on_a_transformer() -> None:
    model = build_workload("char_lm").init_model(0, ArchOptions())
    muon, adamw = hidden_matrices(model)
    assert muon == [f"blocks.{i}.{m}.weight" for i in range(2)
                    for m in ("qkv", "proj", "fc", "out")]
    assert {"tok_emb.weight", "pos_emb", "head.weight", "head.bias", "ln_f.weight",
            "blocks.0.ln1.weight", "blocks.0.qkv.bias"} <= set(adamw)
    assert set(muon) | set(adamw) == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("tied", [True, False])
def test_muon_split_on_gpt_small_keeps_embeddings_and_head_on_adamw(tied: bool) -> None:
    model = build_workload("gpt_small", {"tied_head": tied, "train_tokens": 512,
                                         "val_tokens": 128}).init_model(0, ArchOptions())
    muon, adamw = hidden_matrices(model)
    assert all(n.startswith("blocks.") and n.endswith(".weight") and ".ln" not in n
               for n in muon)
    assert len(muon) == 8
    assert "tok_emb.weight" in adamw and "pos_emb.weight" in adamw
    assert ("head.weight" in adamw) is (not tied)  # tied: it is tok_emb.weight
    groups = muon_groups(model)
    assert [g["use_muon"] for g in groups] == [True, False]
    assert all(p.ndim == 2 for p in groups[0]["params"])


def test_muon_split_on_an_mlp_leaves_the_head_to_adamw() -> None:
    model = build_workload("mlp_digits").init_model(0, ArchOptions())
    assert hidden_matrices(model) == (["0.weight", "2.weight"],
                                      ["0.bias", "2.bias", "4.weight", "4.bias"])


@pytest.mark.parametrize("workload", ["logreg_digits", "cnn_digits", "quadratic", "rosenbrock"])
def test_muon_is_refused_without_a_hidden_matrix(workload: str) -> None:
    with pytest.raises(IncompatibleError) as err:
        prepare_trial({"workload": workload, "optimizer": "muon"})
    assert err.value.field == "optimizer"
    assert "muon needs a 2-D hidden weight matrix" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("name", ["schedule_free_adamw", "schedule_free_sgd"])
def test_schedule_free_refuses_a_schedule(name: str) -> None:
    with pytest.raises(IncompatibleError) as err:
        prepare_trial({"workload": "linreg", "optimizer": name, "scheduler": "cosine"})
    assert err.value.field == "scheduler.name"
    assert "constant with warm-up by construction" in str(err.value)
    prepare_trial({"workload": "linreg", "optimizer": name, "scheduler": "constant"})


def test_schedule_free_is_evaluated_at_its_averaged_point() -> None:
    """The recorded val_loss is the model's loss at x (eval mode), not at y (train mode)."""
    c = {"workload": "linreg", "optimizer": "schedule_free_sgd", "budget": {"epochs": 1},
         "log_every": 1}
    r = run_trial(c)
    assert r.status == "completed", r.error
    prep = prepare_trial(c)
    wl = prep.workload
    model = wl.init_model(0, ArchOptions())
    # Replay the trial by hand: same seed, order and optimizer, then evaluate in both modes.
    torch.manual_seed(0)
    data = wl.data()
    opt = build_optimizer(Component("schedule_free_sgd"), list(model.parameters()))
    perm = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(0))
    for b in range(prep.steps_per_epoch):
        idx = perm[b * prep.batch_size:(b + 1) * prep.batch_size]
        opt.zero_grad()
        wl.loss_fn(model(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
    at_y = wl.evaluate(model, data.x_val, data.y_val)["val_loss"]
    opt.eval()  # type: ignore[attr-defined]
    at_x = wl.evaluate(model, data.x_val, data.y_val)["val_loss"]
    assert not math.isclose(at_x, at_y, rel_tol=1e-6)
    assert r.final["val_loss"] == pytest.approx(at_x, rel=1e-6)


# --- each trains what it is meant for --------------------------------------------------------

#: An MLP, a CNN (4-D filters for the preconditioners) and a transformer LM, small.
_SMALL = {
    "mlp_digits": {"hidden": 32},
    "cnn_digits": {"channels": 4},
    "gpt_small": {"train_tokens": 512, "val_tokens": 128, "d_model": 16, "n_head": 2,
                  "n_layer": 1, "context": 16},
}


@pytest.mark.parametrize("workload", sorted(_SMALL))
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_trains_the_workloads_it_is_meant_for(name: str, workload: str) -> None:
    config = {"workload": {"name": workload, "params": _SMALL[workload]}, "optimizer": name,
              "budget": {"steps": 8}, "batch_size": 32, "log_every": 4}
    if OPTIMIZERS.get(name).param_groups is not None and workload == "cnn_digits":
        with pytest.raises(IncompatibleError):
            prepare_trial(config)
        return
    r = run_trial(config)
    assert r.status == "completed", r.error
    losses = [v for _, v in r.curve("train_loss", "step")]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(r.final["val_loss"])
    # 8 steps at default settings: finite and not worse than the start (ADOPT's first update
    # is zero by design; Prodigy, Kron, LAMB and Shampoo start slowly at their defaults).
    assert losses[-1] <= 1.01 * losses[0], f"{name}: {losses}"
    assert r.step_time_mean is not None and r.step_time_p90 is not None
    assert r.step_time_p90 >= 0 and r.optimizer_state_bytes is not None
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes > 0
