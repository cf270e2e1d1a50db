"""Yogi (Zaheer et al., NeurIPS 2018): Adam with an additive second-moment update.

Adam's ``s ← β2 s + (1-β2) g²`` lets ``s`` shrink fast after a burst of large gradients, so
the effective rate can blow up; Yogi moves ``s`` towards ``g²`` by at most ``(1-β2) g²`` per
step, which keeps the rate from growing too quickly::

    m ← β1 m + (1-β1) g
    s ← s - (1-β2) sgn(s - g²) g²
    w ← w - η (m / (1-β1^t)) / (√(s / (1-β2^t)) + ε)

Not in ``torch.optim``; written with ``torch._foreach_*`` ops over each param group, like
torch's own foreach implementations, so one step launches a handful of kernels per group.

Initial state: ``m₀ = s₀ = initial_accumulator`` (default 1e-6), exactly as the PyTorch
reference implementations (``torch_optimizer.Yogi`` and ``pytorch_optimizer.Yogi``) do, so
that numbers are comparable with theirs. TF-Addons (by the paper's authors) also starts ``s``
at 1e-6 but ``m`` at 0, and adds ε before the ``√(1-β2^t)`` correction; both differences are
negligible next to that of ``s₀``, which dominates the first steps: with ``β2 = 0.999`` the
bias correction divides ``s₀`` by ``1-β2``, so ``ŝ₁ = g² + 1e-3`` and small gradients take
much shorter steps than Adam's. ``initial_accumulator=0`` gives the zero-initialised variant,
whose first step equals Adam's. ``s`` stays non-negative because a decrease is at most
``(1-β2) g² < (1-β2) s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT


def _check_betas(betas: tuple[float, float]) -> None:
    """Raise ``ValueError`` unless both decay rates lie in [0, 1)."""
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


class Yogi(torch.optim.Optimizer):
    """Yogi optimizer (no weight decay: the runner applies regularizers generically).

    Args:
        params: Parameters or param groups.
        lr: Learning rate η (the paper's default 1e-2).
        betas: Decay rates (β1, β2) of the first and second moments.
        eps: Added to √ŝ; the paper uses 1e-3, much larger than Adam's 1e-8.
        initial_accumulator: Starting value of both moments ``m₀ = s₀`` (non-negative).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-3,
        initial_accumulator: float = 1e-6,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not initial_accumulator >= 0.0:
            raise ValueError(f"Invalid initial_accumulator value: {initial_accumulator}")
        _check_betas(betas)
        super().__init__(params, {
            "lr": lr, "betas": tuple(betas), "eps": eps,
            "initial_accumulator": initial_accumulator,
        })

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Do one update of every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        exp_avgs: list[torch.Tensor] = []
        exp_avg_sqs: list[torch.Tensor] = []
        steps: list[int] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Yogi does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = 0
                init = float(group.get("initial_accumulator", 0.0))
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = torch.full_like(
                        p, init, memory_format=torch.preserve_format
                    )
            state["step"] += 1
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]

        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m ← β1 m + (1-β1) g
        grad_sq = torch._foreach_mul(grads, grads)
        sign = torch._foreach_sub(exp_avg_sqs, grad_sq)
        torch._foreach_sign_(sign)
        torch._foreach_mul_(grad_sq, sign)  # sgn(s - g²) g²
        torch._foreach_add_(exp_avg_sqs, grad_sq, alpha=-(1.0 - beta2))

        # w ← w - (η / bc1) m / (√s / √bc2 + ε), with per-parameter bias corrections.
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**t) for t in steps])
        torch._foreach_add_(denom, eps)
        step_sizes = [-lr / (1.0 - beta1**t) for t in steps]
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
