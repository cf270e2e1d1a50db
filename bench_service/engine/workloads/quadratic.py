"""The noisy quadratic model: an ill-conditioned bowl whose minimum jitters from batch to batch.

It is the smallest problem on which learning rate, momentum, batch size and preconditioning
interact the way they do in real networks (Zhang et al. 2019, "Which algorithmic choices
matter at which batch sizes?"), and one whose optimum and curvature are known exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import ArchOptions, Dataset, Target, Workload

#: Fixed seed of the noise samples: every trial sees the same data, the trial seed only
#: changes the batch order.
DATA_SEED = 20_190_000


class _Bowl(nn.Module):
    """One parameter ``x``; ``forward`` gives the loss of each noise sample in the batch."""

    curvatures: torch.Tensor

    def __init__(self, curvatures: torch.Tensor, start: torch.Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(start)
        # A buffer, not a constant: it follows the model to the device and through
        # ``functional_call``, and is not trained.
        self.register_buffer("curvatures", curvatures)

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        diff = self.x - xi
        return 0.5 * (diff * diff * self.curvatures).sum(-1)


@WORKLOADS.register
class NoisyQuadratic(Workload):
    """``f(x) = ½ (x - ξ)ᵀ A (x - ξ)`` with ``ξ ~ N(0, noise²·I)`` drawn per sample.

    ``A`` is diagonal with eigenvalues log-spaced from ``max_curvature`` down to
    ``max_curvature / condition``. The training set is ``n_train`` fixed samples of ``ξ``; a
    batch's loss is the mean over its samples, so a larger batch sees a less noisy minimum
    (the sample mean of ``ξ``). The validation set is the single vector ``ξ = 0``, so
    ``val_loss`` is the true loss ``½ xᵀAx`` (optimum 0), free of the noise floor
    ``½ noise² tr A`` that the training loss keeps.

    The start is ``x₀ = init_scale · 1`` for every seed: the problem is symmetric under sign
    flips of coordinates, so a random sign pattern would change nothing but the look of the
    parameter; seeds only change the batch order. ``dim=1, max_curvature=8, condition=1,
    noise=0, init_scale=2`` is exactly ``f(x) = 4x²`` from ``x₀ = 2`` (gradient descent
    diverges for lr > 0.25 and jumps to 0 at lr = 0.125).

    Target: ``val_loss ≤ 0.01`` (from 7.4 at the defaults), which Adam (lr 1e-2) reaches in
    about 10 epochs and SGD (lr 1 = 1/L, or lr 0.1 with momentum 0.9) in about 15 of the
    default 20; Adam at lr 1e-3 is far too slow along the flat directions (2.5 after 30).
    """

    name = "quadratic"
    description = (
        "Noisy ill-conditioned quadratic bowl ½(x-ξ)ᵀA(x-ξ), A diagonal with log-spaced "
        "eigenvalues; val_loss is the noise-free loss ½xᵀAx."
    )
    hyperparams = ParamSpace((
        HyperParam(
            "dim", 100, kind="int", minimum=1, maximum=10**7, help="number of coordinates",
        ),
        HyperParam(
            "condition", 1e3, minimum=1.0, help="ratio of largest to smallest curvature",
        ),
        HyperParam(
            "max_curvature", 1.0, minimum=0.0, exclusive_minimum=True,
            help="largest eigenvalue of A (the smoothness constant L)",
        ),
        HyperParam("noise", 0.1, minimum=0.0, help="standard deviation of each ξ entry"),
        HyperParam("init_scale", 1.0, help="every entry of the start point x₀"),
        HyperParam(
            "n_train", 1024, kind="int", minimum=1, maximum=10**8,
            help="number of noise samples",
        ),
    ))
    target = Target("val_loss", 0.01, "min")
    default_batch_size = 64
    default_epochs = 20
    seeded_init = False

    def estimated_bytes(self) -> int:
        """The float32 noise samples ``n_train × dim``, twice while they are drawn."""
        return 8 * int(self.params["n_train"]) * int(self.params["dim"])

    def curvatures(self) -> torch.Tensor:
        """The diagonal of ``A``, largest first."""
        low = -math.log10(float(self.params["condition"]))
        spectrum = torch.logspace(0.0, low, int(self.params["dim"]), dtype=torch.float64)
        return (spectrum * float(self.params["max_curvature"])).float()

    def make_data(self) -> Dataset:
        dim, n = int(self.params["dim"]), int(self.params["n_train"])
        xi = torch.randn(n, dim, generator=self.generator(DATA_SEED)) * self.params["noise"]
        return Dataset(
            x_train=xi, y_train=torch.zeros(n), x_val=torch.zeros(1, dim), y_val=torch.zeros(1),
        )

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        start = torch.full((int(self.params["dim"]),), float(self.params["init_scale"]))
        return _Bowl(self.curvatures(), start)

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of the per-sample losses (``target`` is a placeholder)."""
        return output.mean()

