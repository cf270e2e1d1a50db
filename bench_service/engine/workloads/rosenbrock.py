"""Rosenbrock's banana valley: a 2-d deterministic problem whose trajectory can be drawn.

The minimum ``(a, a²)`` lies at the end of a long, curved, flat-bottomed valley: reaching the
valley is easy, following it is what separates momentum and adaptive methods from plain
gradient descent.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import ArchOptions, Dataset, Target, Workload


class _Point(nn.Module):
    """The parameter ``xy = (x, y)``; ``forward`` repeats ``f(x, y)`` once per batch row."""

    def __init__(self, a: float, b: float, start: tuple[float, float]) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float32))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x, y = self.xy[0], self.xy[1]
        f = (self.a - x) ** 2 + self.b * (y - x * x) ** 2
        return f.expand(rows.shape[0])


@WORKLOADS.register
class Rosenbrock(Workload):
    """``f(x, y) = (a - x)² + b (y - x²)²``, minimum 0 at ``(a, a²)``.

    There is no data: the training set is ``steps_per_epoch`` placeholder rows, so with the
    default batch size 1 an epoch is ``steps_per_epoch`` updates on the exact function and
    epochs only set how often validation is recorded (a larger batch just means fewer
    updates per epoch: every row sees the same loss). The validation set is one placeholder
    row, so ``val_loss`` is ``f`` at the current point. ``step_extras`` reports ``param_x``
    and ``param_y`` with every training-loss record, which is the trajectory to draw.

    The start ``(x0, y0)`` (default ``(-1.5, 2)``, across the valley from the minimum) is the
    same for every seed by design: the problem is deterministic, so seeds give identical runs.

    Target: ``val_loss ≤ 0.01`` (from 12.5), which Adam (lr 1e-2) reaches in about 20 of the
    default 30 epochs (3,000 updates) and SGD (lr 1e-3, momentum 0.9) in about 5; Adam at
    lr 1e-3 (steps of at most 1e-3) is still far away after 30.
    """

    name = "rosenbrock"
    description = (
        "Rosenbrock's 2-d banana valley (a-x)² + b(y-x²)² from (-1.5, 2); deterministic, with "
        "the (x, y) trajectory recorded."
    )
    hyperparams = ParamSpace((
        HyperParam("a", 1.0, help="the minimum is at (a, a²)"),
        HyperParam("b", 100.0, minimum=0.0, help="steepness of the valley walls"),
        HyperParam("x0", -1.5, help="start x"),
        HyperParam("y0", 2.0, help="start y"),
        HyperParam(
            "steps_per_epoch", 100, kind="int", minimum=2, maximum=10**7,
            help="placeholder training rows = updates per epoch at batch size 1",
        ),
    ))
    target = Target("val_loss", 0.01, "min")
    # Gradients reach ~10³ on the valley walls: the SGD family's registry lrs (0.1, 0.01)
    # diverge at once, so this problem suggests 1e-3 (overridden by any lr the user gives).
    optimizer_defaults = {
        "sgd": {"lr": 1e-3}, "momentum": {"lr": 1e-3}, "nesterov": {"lr": 1e-3},
    }
    default_batch_size = 1
    default_epochs = 30
    seeded_init = False

    def make_data(self) -> Dataset:
        n = int(self.params["steps_per_epoch"])
        return Dataset(
            x_train=torch.zeros(n, 1), y_train=torch.zeros(n),
            x_val=torch.zeros(1, 1), y_val=torch.zeros(1),
        )

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        p = self.params
        return _Point(float(p["a"]), float(p["b"]), (float(p["x0"]), float(p["y0"])))

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``f`` at the current point (every row holds the same value)."""
        return output.mean()

    def step_extras(self, model: nn.Module) -> Mapping[str, float]:
        x, y = model.get_parameter("xy").detach().tolist()
        return {"param_x": float(x), "param_y": float(y)}

