"""Elementwise optimizer updates over stacked parameters: one rule per packable optimizer.

A packed runner (``engine.packed``) trains K members of a pack as one program: every
parameter is a ``[K, ...]`` tensor and every hyperparameter a ``[K]`` tensor, so member k's
update reads only slice k. Each rule below is the single-tensor update of the torch (or our
own Yogi/Lion) implementation that ``run_trial`` uses, written with the hyperparameters as
broadcast tensors instead of Python floats; the equivalence tests
(``tests/engine/test_packed.py``) check each one against ``run_trial`` in float64.

Only elementwise optimizers can be packed: an update that mixes coordinates of a matrix
(Muon, SOAP, Shampoo) is per member too in principle, but its kernels do not batch this way,
and a rule that reduced over the leading axis would couple members. An optimizer is packable
exactly when it has an entry in ``PACKED_RULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensors = dict[str, torch.Tensor]
#: ``update(params, grads, state, hp, lr, t)``: one step in place; ``hp`` maps each numeric
#: hyperparameter to a ``[K]`` tensor, ``lr`` is the ``[K]`` rate of this step, ``t`` the
#: 1-based step count (all members of a pack step together).
Update = Callable[[Tensors, Tensors, dict[str, Tensors], dict[str, torch.Tensor],
                   torch.Tensor, int], None]


@dataclass(frozen=True)
class PackedRule:
    """How one optimizer runs packed: its state buffers and its update."""

    #: Names of the per-parameter state buffers and their initial value (a hyperparameter
    #: name for Yogi's ``initial_accumulator``, else 0).
    state: tuple[tuple[str, str | None], ...]
    update: Update


def per_member(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``[K]`` tensor viewed as ``[K, 1, ...]`` to broadcast against a stacked tensor."""
    return v.view((v.shape[0],) + (1,) * (like.dim() - 1))


def init_state(rule: PackedRule, params: Tensors, hp: dict[str, torch.Tensor]
               ) -> dict[str, Tensors]:
    """Zero (or ``initial_accumulator``-filled) state buffers shaped like ``params``."""
    state: dict[str, Tensors] = {}
    for key, init in rule.state:
        bufs: Tensors = {}
        for name, p in params.items():
            buf = torch.zeros_like(p)
            if init is not None:
                buf += per_member(hp[init], p)
            bufs[name] = buf
        state[key] = bufs
    return state


def _sgd(params: Tensors, grads: Tensors, state: dict[str, Tensors],
         hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        p.sub_(per_member(lr, p) * grads[n])


def _momentum(nesterov: bool) -> Update:
    def update(params: Tensors, grads: Tensors, state: dict[str, Tensors],
               hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
        for n, p in params.items():
            g, buf = grads[n], state["buf"][n]
            mom = per_member(hp["momentum"], p)
            if t == 1:
                buf.copy_(g)  # torch: the first buffer is the gradient itself
            else:
                buf.mul_(mom).add_(g)
            step = g + mom * buf if nesterov else buf
            p.sub_(per_member(lr, p) * step)

    return update


def _adagrad(params: Tensors, grads: Tensors, state: dict[str, Tensors],
             hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, s = grads[n], state["sum"][n]
        s.addcmul_(g, g)
        p.sub_(per_member(lr, p) * (g / (s.sqrt() + per_member(hp["eps"], p))))


def _rmsprop(params: Tensors, grads: Tensors, state: dict[str, Tensors],
             hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, sq, buf = grads[n], state["square_avg"][n], state["buf"][n]
        alpha = per_member(hp["alpha"], p)
        sq.mul_(alpha).add_((1 - alpha) * g * g)
        avg = sq.sqrt() + per_member(hp["eps"], p)
        # With momentum 0 the buffer is g / avg: the same step as torch's momentum-free path.
        buf.mul_(per_member(hp["momentum"], p)).add_(g / avg)
        p.sub_(per_member(lr, p) * buf)


def _adadelta(params: Tensors, grads: Tensors, state: dict[str, Tensors],
              hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, sq, acc = grads[n], state["square_avg"][n], state["acc_delta"][n]
        rho, eps = per_member(hp["rho"], p), per_member(hp["eps"], p)
        sq.mul_(rho).add_((1 - rho) * g * g)
        delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g
        acc.mul_(rho).add_((1 - rho) * delta * delta)
        p.sub_(per_member(lr, p) * delta)


def _moments(g: torch.Tensor, m: torch.Tensor, s: torch.Tensor, b1: torch.Tensor,
             b2: torch.Tensor) -> None:
    m.lerp_(g, 1 - b1)  # m ← β1 m + (1-β1) g, as torch's lerp_
    s.mul_(b2).add_((1 - b2) * g * g)


def _adam(decoupled: bool) -> Update:
    def update(params: Tensors, grads: Tensors, state: dict[str, Tensors],
               hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
        for n, p in params.items():
            m, s = state["exp_avg"][n], state["exp_avg_sq"][n]
            b1, b2 = per_member(hp["beta1"], p), per_member(hp["beta2"], p)
            lr_b = per_member(lr, p)
            if decoupled:
                p.mul_(1 - lr_b * per_member(hp["weight_decay"], p))
            _moments(grads[n], m, s, b1, b2)
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            denom = s.sqrt() / bc2.sqrt() + per_member(hp["eps"], p)
            p.sub_(lr_b / bc1 * (m / denom))

    return update


_MOMENTUM_DECAY = 4e-3  # torch NAdam's default ψ


def _nadam(params: Tensors, grads: Tensors, state: dict[str, Tensors],
           hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    beta1 = hp["beta1"]
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * _MOMENTUM_DECAY))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * _MOMENTUM_DECAY))
    # Π μ over steps 1..t, the same for every parameter: kept once per pack.
    prod = state["_mu_product"]["_"]
    prod.mul_(mu)
    prod_next = prod * mu_next
    for n, p in params.items():
        g, m, s = grads[n], state["exp_avg"][n], state["exp_avg_sq"][n]
        b1, b2 = per_member(beta1, p), per_member(hp["beta2"], p)
        _moments(g, m, s, b1, b2)
        denom = (s / (1 - b2**t)).sqrt() + per_member(hp["eps"], p)
        lr_b = per_member(lr, p)
        p.add_(per_member(-(1.0 - mu) / (1.0 - prod), p) * lr_b * (g / denom))
        p.add_(per_member(-mu_next / (1.0 - prod_next), p) * lr_b * (m / denom))


def _radam(params: Tensors, grads: Tensors, state: dict[str, Tensors],
           hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    beta2 = hp["beta2"]
    bc2 = 1 - beta2**t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / bc2
    rect_on = rho_t > 5.0
    safe_rho = torch.where(rect_on, rho_t, torch.full_like(rho_t, 6.0))
    rect = ((safe_rho - 4) * (safe_rho - 2) * rho_inf
            / ((rho_inf - 4) * (rho_inf - 2) * safe_rho)).sqrt()
    for n, p in params.items():
        g, m, s = grads[n], state["exp_avg"][n], state["exp_avg_sq"][n]
        b1 = per_member(hp["beta1"], p)
        _moments(g, m, s, b1, per_member(beta2, p))
        m_hat = m / (1 - b1**t)
        lr_b = per_member(lr, p)
        adaptive = per_member(bc2, p).sqrt() / (s.sqrt() + per_member(hp["eps"], p))
        rectified = m_hat * lr_b * adaptive * per_member(rect, p)
        p.sub_(torch.where(per_member(rect_on, p), rectified, m_hat * lr_b))


def _adamax(params: Tensors, grads: Tensors, state: dict[str, Tensors],
            hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, m, u = grads[n], state["exp_avg"][n], state["exp_inf"][n]
        b1 = per_member(hp["beta1"], p)
        m.lerp_(g, 1 - b1)
        torch.maximum(u * per_member(hp["beta2"], p), g.abs() + per_member(hp["eps"], p),
                      out=u)
        p.sub_(per_member(lr, p) / (1 - b1**t) * (m / u))


def _yogi(params: Tensors, grads: Tensors, state: dict[str, Tensors],
          hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, m, s = grads[n], state["exp_avg"][n], state["exp_avg_sq"][n]
        b1, b2 = per_member(hp["beta1"], p), per_member(hp["beta2"], p)
        m.lerp_(g, 1 - b1)
        g2 = g * g
        s.sub_((1 - b2) * torch.sign(s - g2) * g2)
        denom = s.sqrt() / (1 - b2**t).sqrt() + per_member(hp["eps"], p)
        p.sub_(per_member(lr, p) / (1 - b1**t) * (m / denom))


def _lion(params: Tensors, grads: Tensors, state: dict[str, Tensors],
          hp: dict[str, torch.Tensor], lr: torch.Tensor, t: int) -> None:
    for n, p in params.items():
        g, m = grads[n], state["exp_avg"][n]
        b1, b2 = per_member(hp["beta1"], p), per_member(hp["beta2"], p)
        p.sub_(per_member(lr, p) * torch.sign(torch.lerp(m, g, 1 - b1)))
        m.lerp_(g, 1 - b2)


_ADAM_STATE: tuple[tuple[str, str | None], ...] = (("exp_avg", None), ("exp_avg_sq", None))

#: The packable optimizers (registry names) and their packed updates.
PACKED_RULES: dict[str, PackedRule] = {
    "sgd": PackedRule((), _sgd),
    "momentum": PackedRule((("buf", None),), _momentum(nesterov=False)),
    "nesterov": PackedRule((("buf", None),), _momentum(nesterov=True)),
    "adagrad": PackedRule((("sum", None),), _adagrad),
    "rmsprop": PackedRule((("square_avg", None), ("buf", None)), _rmsprop),
    "adadelta": PackedRule((("square_avg", None), ("acc_delta", None)), _adadelta),
    "adam": PackedRule(_ADAM_STATE, _adam(decoupled=False)),
    "adamw": PackedRule(_ADAM_STATE, _adam(decoupled=True)),
    "nadam": PackedRule(_ADAM_STATE, _nadam),
    "radam": PackedRule(_ADAM_STATE, _radam),
    "adamax": PackedRule((("exp_avg", None), ("exp_inf", None)), _adamax),
    "yogi": PackedRule((("exp_avg", "initial_accumulator"), ("exp_avg_sq", "initial_accumulator")),
                       _yogi),
    "lion": PackedRule((("exp_avg", None),), _lion),
}


def pack_state(name: str, params: Tensors, hp: dict[str, torch.Tensor]) -> dict[str, Tensors]:
    """The initial state of optimizer ``name`` for stacked ``params``."""
    state = init_state(PACKED_RULES[name], params, hp)
    if name == "nadam":
        k = next(iter(params.values())).shape[0]
        state["_mu_product"] = {"_": torch.ones(k, dtype=next(iter(params.values())).dtype,
                                                device=next(iter(params.values())).device)}
    return state


__all__ = ["PACKED_RULES", "PackedRule", "pack_state", "per_member"]
