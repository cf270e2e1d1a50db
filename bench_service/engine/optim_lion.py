"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

Lion keeps one moment and applies only its sign, so every coordinate moves by exactly ``η``
per step; the update interpolates with β1 while the moment itself decays with β2::

    c ← β1 m + (1-β1) g
    w ← w - η sgn(c)
    m ← β2 m + (1-β2) g

Because the update norm is that of a sign vector, Lion wants a learning rate 3-10x smaller
than AdamW's (default 1e-4). Not in ``torch.optim``; written with ``torch._foreach_*`` ops over
each param group, like torch's own foreach implementations. Lion needs no step counter (there
is no bias correction), so its state is only ``exp_avg``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.optimizer import ParamsT


def _check_betas(betas: tuple[float, float]) -> None:
    """Raise ``ValueError`` unless both decay rates lie in [0, 1)."""
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


class Lion(torch.optim.Optimizer):
    """Lion optimizer (no weight decay: the runner applies regularizers generically).

    Args:
        params: Parameters or param groups.
        lr: Learning rate η, the size of every coordinate's step.
        betas: (β1, β2): interpolation for the update direction, decay of the moment.
    """

    def __init__(
        self, params: ParamsT, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99)
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        _check_betas(betas)
        super().__init__(params, {"lr": lr, "betas": tuple(betas)})

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
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Lion does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
        if not params:
            return
        beta1, beta2 = group["betas"]

        update = torch._foreach_lerp(exp_avgs, grads, 1.0 - beta1)  # c = β1 m + (1-β1) g
        torch._foreach_sign_(update)
        torch._foreach_add_(params, update, alpha=-group["lr"])
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta2)  # m ← β2 m + (1-β2) g
