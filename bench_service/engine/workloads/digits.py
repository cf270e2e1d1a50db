"""Three classifiers of scikit-learn's 8x8 handwritten digits: linear, MLP and small CNN.

The data (1,797 images, 10 classes) ships in ``data/digits.npz`` (extracted once from
``sklearn.datasets.load_digits``: ``images`` uint8 0..16 of shape [1797, 8, 8], ``labels``,
and ``val_idx``, a stratified validation split of 36 images per class), so nothing is
downloaded and scikit-learn is not needed at run time; storing the split rather than a seed
keeps it identical across numpy versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench_service.engine.errors import IncompatibleError
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import (
    MODEL_BYTES_PER_PARAM,
    ArchOptions,
    Dataset,
    Target,
    Workload,
)

DATA_FILE = Path(__file__).parent / "data" / "digits.npz"


def load_digits_split() -> Dataset:
    """Pixels scaled to [0, 1] as flat float vectors [N, 64]; 1,437 train / 360 val."""
    with np.load(DATA_FILE) as f:
        images, labels, val_idx = f["images"], f["labels"], f["val_idx"]
    x = torch.from_numpy(images.reshape(len(images), 64).astype(np.float32) / 16.0)
    y = torch.from_numpy(labels.astype(np.int64))
    is_val = torch.zeros(len(y), dtype=torch.bool)
    is_val[torch.from_numpy(val_idx.astype(np.int64))] = True
    return Dataset(x[~is_val], y[~is_val], x[is_val], y[is_val])


def seeded_build(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model with PyTorch's default initialisation drawn from ``seed`` alone.

    The module is built on the meta device (which draws nothing from the global RNG, so
    building a model never shifts dropout masks or batch orders elsewhere), then every
    Linear/Conv layer gets PyTorch's default ``U(±1/√fan_in)`` from a local generator and
    every other layer its own deterministic ``reset_parameters`` (norm layers: gamma=1, beta=0).
    """
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    g = Workload.generator(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=g)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=g)
            elif callable(reset := getattr(module, "reset_parameters", None)):
                reset()
    return model


class _DigitsWorkload(Workload):
    """Shared data, loss and target of the digits family (cross-entropy, batch 64)."""

    classification = True
    default_batch_size = 64
    #: The width that ``groupnorm`` (8 groups) must divide, or ``None``.
    width_param: str | None = None

    def make_data(self) -> Dataset:
        return load_digits_split()

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def check_arch(self, arch: ArchOptions, where: str = "regularizer") -> None:
        super().check_arch(arch, where)
        if arch.norm == "groupnorm" and self.width_param is not None:
            width = int(self.params[self.width_param])
            if width % 8:
                raise IncompatibleError(
                    where, f"groupnorm uses 8 groups, so {self.name}'s {self.width_param} must "
                    f"be a multiple of 8, got {width}",
                )


@WORKLOADS.register
class LogRegDigits(_DigitsWorkload):
    """Multinomial logistic regression: one ``Linear(64, 10)`` (convex).

    Target: ``val_accuracy ≥ 0.93``, reached by Adam (lr 1e-3) in 10-16 of the default 20
    epochs at the default batch 32 (at batch 64 it takes about 27 epochs: a linear model on
    unnormalised-scale logits learns slowly with small steps).
    """

    name = "logreg_digits"
    description = "Logistic regression (one Linear 64→10) on the 8x8 digits; convex."
    target = Target("val_accuracy", 0.93, "max")
    default_batch_size = 32
    default_epochs = 20

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        return seeded_build(lambda: nn.Linear(64, 10), seed)


_MLP_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm1d,
    "layernorm": nn.LayerNorm,
    "groupnorm": lambda width: nn.GroupNorm(8, width),
}


@WORKLOADS.register
class MLPDigits(_DigitsWorkload):
    """MLP 64 → hidden → hidden → 10 with ReLU.

    Architecture options: ``norm`` (batchnorm, layernorm or groupnorm with 8 groups) goes
    after each hidden Linear, before its ReLU; ``dropout`` after each hidden ReLU.
    InstanceNorm is not offered: a feature vector has no spatial axes to normalise over.

    Target: ``val_accuracy ≥ 0.95``, reached by Adam (lr 1e-3, batch 64) in 5-10 of the
    default 15 epochs.
    """

    name = "mlp_digits"
    description = "Two-hidden-layer ReLU MLP on the 8x8 digits; supports dropout and norms."
    hyperparams = ParamSpace((
        HyperParam(
            "hidden", 128, kind="int", minimum=1, maximum=2**16, help="units per hidden layer",
        ),
    ))
    target = Target("val_accuracy", 0.95, "max")
    default_epochs = 15
    supports_dropout = True
    supported_norms = tuple(_MLP_NORMS)
    width_param = "hidden"

    def estimated_bytes(self) -> int:
        h = int(self.params["hidden"])
        return MODEL_BYTES_PER_PARAM * (65 * h + (h + 1) * h + (h + 1) * 10)

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        hidden = int(self.params["hidden"])

        def build() -> nn.Module:
            layers: list[nn.Module] = []
            for n_in in (64, hidden):
                layers.append(nn.Linear(n_in, hidden))
                if arch.norm is not None:
                    layers.append(_MLP_NORMS[arch.norm](hidden))
                layers.append(nn.ReLU())
                if arch.dropout > 0:
                    layers.append(nn.Dropout(arch.dropout))
            layers.append(nn.Linear(hidden, 10))
            return nn.Sequential(*layers)

        return seeded_build(build, seed)


_CNN_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    # LayerNorm of a conv feature map: normalise over (C, H, W) per sample with a
    # per-channel affine, i.e. GroupNorm with one group (per-pixel gamma would tie the model
    # to one image size).
    "layernorm": lambda c: nn.GroupNorm(1, c),
    "groupnorm": lambda c: nn.GroupNorm(8, c),
    "instancenorm": lambda c: nn.InstanceNorm2d(c, affine=True),
}


@WORKLOADS.register
class CNNDigits(_DigitsWorkload):
    """Small CNN on 1x8x8 images.

    ``conv3x3(1→c) → norm → ReLU → conv3x3(c→2c) → norm → ReLU → maxpool 2 → dropout →
    Linear(2c·16 → 10)`` with ``c = channels`` (16) and padding 1. ``norm`` is batchnorm
    (BatchNorm2d), layernorm (GroupNorm with one group, see ``_CNN_NORMS``), groupnorm
    (8 groups) or instancenorm (InstanceNorm2d with affine gamma, beta); ``dropout`` acts on the
    pooled features, the only hidden layer wide enough for it to matter. Inputs are the same
    flat vectors as the other digits workloads, reshaped inside the model.

    Target: ``val_accuracy ≥ 0.95``, reached by Adam (lr 1e-3, batch 64) in about 6 of the
    default 15 epochs.
    """

    name = "cnn_digits"
    description = "Two-conv-layer CNN on the 8x8 digits; supports dropout and all four norms."
    hyperparams = ParamSpace((
        HyperParam(
            "channels", 16, kind="int", minimum=1, maximum=2**12,
            help="channels of the first conv (the second has twice as many)",
        ),
    ))
    target = Target("val_accuracy", 0.95, "max")
    default_epochs = 15
    supports_dropout = True
    supported_norms = tuple(_CNN_NORMS)
    width_param = "channels"

    def estimated_bytes(self) -> int:
        c = int(self.params["channels"])
        params = 10 * c + (9 * c + 1) * 2 * c + (32 * c + 1) * 10
        return MODEL_BYTES_PER_PARAM * params

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        c = int(self.params["channels"])

        def build() -> nn.Module:
            layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
            for n_in, n_out in ((1, c), (c, 2 * c)):
                layers.append(nn.Conv2d(n_in, n_out, 3, padding=1))
                if arch.norm is not None:
                    layers.append(_CNN_NORMS[arch.norm](n_out))
                layers.append(nn.ReLU())
            layers += [nn.MaxPool2d(2), nn.Flatten()]
            if arch.dropout > 0:
                layers.append(nn.Dropout(arch.dropout))
            layers.append(nn.Linear(2 * c * 16, 10))
            return nn.Sequential(*layers)

        return seeded_build(build, seed)

