"""Linear regression on synthetic data: a convex problem with a known noise floor."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import ArchOptions, Dataset, Target, Workload

#: Fixed seed of the data set (inputs, true weights, noise): the same for every trial.
DATA_SEED = 1_234


@WORKLOADS.register
class LinearRegression(Workload):
    """``y = X w + b + ε`` with ``X, b ~ N(0, 1)``, ``w ~ N(0, 1/dim)`` and ``ε ~ N(0, noise²)``.

    A fraction ``sparsity`` of the true weights is exactly zero (default 0.5), so that an L1
    penalty has something to find: it zeroes those weights, an L2 penalty only shrinks them.

    The true weights are scaled by ``1/√dim`` so the signal ``Xw`` has unit variance whatever
    ``dim`` is. The model is ``nn.Linear(dim, 1)`` with PyTorch's default initialisation
    drawn from the trial seed; the loss is the mean squared error, whose best possible
    validation value is about ``noise²`` (0.01 at the defaults).

    Target: ``val_loss ≤ 0.02``, which SGD (lr 0.1) reaches in the first epoch and Adam
    (lr 1e-2) in about 3 of the default 10; Adam at lr 1e-3 is still at 0.05 after 20.
    """

    name = "linreg"
    description = (
        "Synthetic linear regression y = Xw + b + noise (MSE) with a fixed data seed; the "
        "optimum val_loss is about noise²."
    )
    hyperparams = ParamSpace((
        HyperParam(
            "dim", 20, kind="int", minimum=1, maximum=10**6, help="number of input features",
        ),
        HyperParam("noise", 0.1, minimum=0.0, help="standard deviation of the label noise"),
        HyperParam(
            "sparsity", 0.5, minimum=0.0, maximum=1.0, help="fraction of true weights that are 0"
        ),
        HyperParam(
            "n_train", 1024, kind="int", minimum=2, maximum=10**8, help="training samples",
        ),
        HyperParam(
            "n_val", 256, kind="int", minimum=1, maximum=10**8, help="validation samples",
        ),
    ))
    target = Target("val_loss", 0.02, "min")
    default_batch_size = 32
    default_epochs = 10

    def estimated_bytes(self) -> int:
        """Float32 inputs and labels of both splits (drawn once, then sliced)."""
        p = self.params
        return 4 * (int(p["n_train"]) + int(p["n_val"])) * (int(p["dim"]) + 1)

    def make_data(self) -> Dataset:
        p = self.params
        g = self.generator(DATA_SEED)
        dim, n_train, n_val = int(p["dim"]), int(p["n_train"]), int(p["n_val"])
        w = torch.randn(dim, 1, generator=g) / math.sqrt(dim)
        b = torch.randn(1, generator=g)
        x = torch.randn(n_train + n_val, dim, generator=g)
        # the zero pattern comes from its own generator so the other draws stay the same
        n_zero = round(float(p["sparsity"]) * dim)
        w[torch.randperm(dim, generator=self.generator(DATA_SEED + 1))[:n_zero]] = 0.0
        y = x @ w + b + float(p["noise"]) * torch.randn(n_train + n_val, 1, generator=g)
        return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        with torch.device("meta"):  # no draw from the global RNG
            model = nn.Linear(int(self.params["dim"]), 1)
        model.to_empty(device="cpu")
        bound = 1.0 / math.sqrt(model.in_features)  # PyTorch's default for nn.Linear
        g = self.generator(seed)
        with torch.no_grad():
            model.weight.uniform_(-bound, bound, generator=g)
            model.bias.uniform_(-bound, bound, generator=g)
        return model

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

