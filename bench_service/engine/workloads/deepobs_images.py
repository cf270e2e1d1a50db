"""DeepOBS's image test problems, plus the ResNet-18 practitioners train on CIFAR-10.

Architectures, initialisation, batch sizes and budgets follow DeepOBS (its PyTorch modules,
which mirror the TensorFlow ones of the published results): TensorFlow's ``same`` padding
(asymmetric: the extra row/column at the bottom/right) for convolutions and max-pools, zero
biases / Xavier weights where DeepOBS uses them, truncated normals for 2c2d. Data:

* MNIST / Fashion-MNIST: 60,000 training images → 50,000 train + the last 10,000 as the
  validation set; the 10,000 test images; pixels / 255. Train-eval: the first 10,000 train.
* CIFAR-10/100: 50,000 → 40,000 train + the last 10,000 validation; 10,000 test. Every image
  is standardised per image (TF's ``per_image_standardization``); training batches are first
  augmented as DeepOBS does: zero-pad to 36×36, random 32×32 crop, random horizontal flip,
  random brightness (±63/255), saturation (×0.5–1.5) and contrast (×0.2–1.8).
* Every split drops its last incomplete batch (DeepOBS's ``drop_remainder``).

DeepOBS adds its L2 term (``l2_reg · ½‖w‖²`` over the weights) inside the problem; here
regularization is its own axis: ``{name: l2, params: {strength: l2_reg / 2}}`` reproduces it
(``cifar10_3c3d``: 0.001, ``cifar100_allcnnc``: 0.00025), and ``bench import deepobs`` maps
published files that way. The data come from ``bench data fetch mnist|fmnist|cifar10|cifar100``
(see ``bench_service.engine.datasets``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench_service.engine.datasets import read_cifar, read_mnist_like
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import (
    ArchOptions,
    Dataset,
    Target,
    Workload,
)

VALID_SIZE = 10_000
TRAIN_EVAL_SIZE = 10_000


class TFSamePad(nn.Module):
    """TensorFlow's ``same`` padding for a kernel/stride: the odd pixel goes bottom/right."""

    def __init__(self, kernel: int, stride: int, value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride, self.value = kernel, stride, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            out = math.ceil(size / self.stride)
            total = max((out - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=self.value) if any(pads) else x


def conv(c_in: int, c_out: int, k: int, stride: int = 1, same: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [TFSamePad(k, stride)] if same else []
    return [*layers, nn.Conv2d(c_in, c_out, k, stride=stride)]


def maxpool(k: int, stride: int) -> list[nn.Module]:
    return [TFSamePad(k, stride, value=-math.inf), nn.MaxPool2d(k, stride)]


def _truncated_normal(t: torch.Tensor, std: float, g: torch.Generator) -> None:
    """N(0, std²) redrawn until within 2 std (TF's ``truncated_normal``)."""
    t.normal_(0.0, std, generator=g)
    while (bad := t.abs() > 2 * std).any():
        t[bad] = torch.empty(int(bad.sum())).normal_(0.0, std, generator=g)


def _xavier(t: torch.Tensor, g: torch.Generator, normal: bool) -> None:
    fan_out, fan_in = t.shape[0], t[0].numel()
    fan_out *= t[0, 0].numel() if t.dim() > 2 else 1
    if normal:
        t.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)
    else:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        t.uniform_(-bound, bound, generator=g)


def build_seeded(build: Callable[[], nn.Module], init: Callable[[nn.Module, torch.Generator],
                 None], seed: int) -> nn.Module:
    """Build on the meta device (no global RNG draw), then initialise from ``seed`` alone."""
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    g = Workload.generator(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                init(module, g)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
    return model


def _split(x: np.ndarray, y: np.ndarray, scale: float) -> tuple[torch.Tensor, ...]:
    """Train and validation parts: the last 10,000 images validate (a sixth of a smaller
    file, so that the small files tests build split the same way)."""
    xt = torch.from_numpy(x.astype(np.float32) / scale)
    yt = torch.from_numpy(y.astype(np.int64))
    n = len(xt) - min(VALID_SIZE, len(xt) // 6)
    return xt[:n], yt[:n], xt[n:], yt[n:]


def _drop(x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole batches only, as DeepOBS evaluates (a set smaller than one batch is kept)."""
    keep = (len(x) // batch) * batch or len(x)
    return x[:keep], y[:keep]


class _ImageWorkload(Workload):
    """Shared data handling: train/valid/test/train-eval splits, cross-entropy, accuracy."""

    classification = True
    drop_last = True
    evaluate_at_start = True
    source: ClassVar[str]
    #: Training images before the validation split (for step counts without the data).
    n_images: ClassVar[int]

    def train_size(self) -> int:
        return self.n_images - VALID_SIZE

    def load(self) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def make_data(self) -> Dataset:
        x_train, y_train, x_val, y_val, x_test, y_test = self.load()
        bs = self.default_batch_size
        x_val, y_val = _drop(x_val, y_val, bs)
        x_test, y_test = _drop(x_test, y_test, bs)
        evals = _drop(x_train[:TRAIN_EVAL_SIZE], y_train[:TRAIN_EVAL_SIZE], bs)
        if self.augments:
            evals = (self.standardize(evals[0]), evals[1])
            x_val, x_test = self.standardize(x_val), self.standardize(x_test)
        return Dataset(x_train, y_train, x_val, y_val,
                       eval_splits={"test": (x_test, y_test), "train_eval": evals})

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    @staticmethod
    def standardize(x: torch.Tensor) -> torch.Tensor:
        """TF's ``per_image_standardization``: zero mean, unit variance per image."""
        flat = x.flatten(1)
        mean = flat.mean(1, keepdim=True)
        std = flat.std(1, unbiased=False, keepdim=True).clamp_min(1.0 / math.sqrt(flat.shape[1]))
        return ((flat - mean) / std).view_as(x)


class _MnistLike(_ImageWorkload):
    n_images = 60_000

    def load(self) -> tuple[torch.Tensor, ...]:
        x, y, xt, yt = read_mnist_like(self.source, self.name)
        x_train, y_train, x_val, y_val = _split(x[:, None], y, 255.0)
        x_test = torch.from_numpy(xt[:, None].astype(np.float32) / 255.0)
        return x_train, y_train, x_val, y_val, x_test, torch.from_numpy(yt.astype(np.int64))


class _Cifar(_ImageWorkload):
    n_images = 50_000
    augments = True

    def load(self) -> tuple[torch.Tensor, ...]:
        x, y, xt, yt = read_cifar(self.source, self.name)
        x_train, y_train, x_val, y_val = _split(x, y, 255.0)
        x_test = torch.from_numpy(xt.astype(np.float32) / 255.0)
        return x_train, y_train, x_val, y_val, x_test, torch.from_numpy(yt.astype(np.int64))

    def augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """DeepOBS's CIFAR training pipeline on a batch, then per-image standardisation."""
        n, dev = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return (torch.rand(n, 1, 1, 1, generator=g, device=dev) * (high - low) + low)

        padded = F.pad(x, (2, 2, 2, 2))
        dy = torch.randint(0, 5, (n,), generator=g, device=dev)
        dx = torch.randint(0, 5, (n,), generator=g, device=dev)
        rows = (dy[:, None] + torch.arange(32, device=dev))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(32, device=dev))[:, None, None, :]
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(3, device=dev)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
        flip = torch.rand(n, generator=g, device=dev) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        out = out + uniform(-63 / 255, 63 / 255)
        gray = (out * torch.tensor([0.299, 0.587, 0.114], device=dev)[None, :, None, None]
                ).sum(1, keepdim=True)
        out = gray + uniform(0.5, 1.5) * (out - gray)
        mean = out.mean((2, 3), keepdim=True)
        out = mean + uniform(0.2, 1.8) * (out - mean)
        return self.standardize(out)


def _zero_init(module: nn.Module, g: torch.Generator) -> None:
    nn.init.zeros_(module.weight)  # type: ignore[arg-type]
    nn.init.zeros_(module.bias)  # type: ignore[arg-type]


@WORKLOADS.register
class MnistLogReg(_MnistLike):
    """DeepOBS ``mnist_logreg``: multinomial logistic regression on MNIST, zero-initialised.

    Batch 128, 50 epochs. Target: ``val_accuracy ≥ 0.92``.
    """

    name = "mnist_logreg"
    description = "DeepOBS mnist_logreg: Linear(784→10) from zeros on MNIST; batch 128, 50 ep."
    source = "mnist"
    target = Target("val_accuracy", 0.92, "max")
    default_batch_size = 128
    default_epochs = 50
    seeded_init = False

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        return build_seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                            _zero_init, seed)


def _init_2c2d(module: nn.Module, g: torch.Generator) -> None:
    _truncated_normal(module.weight, 0.05, g)  # type: ignore[arg-type]
    nn.init.constant_(module.bias, 0.05)  # type: ignore[arg-type]


@WORKLOADS.register
class Fmnist2c2d(_MnistLike):
    """DeepOBS ``fmnist_2c2d``: two 5×5 conv (32, 64) + max-pool layers, dense 1024, 10.

    Truncated-normal (σ 0.05) weights, biases 0.05; batch 128, 100 epochs. Target:
    ``val_accuracy ≥ 0.9``.
    """

    name = "fmnist_2c2d"
    description = "DeepOBS fmnist_2c2d: 2 conv + 2 dense layers on Fashion-MNIST; batch 128."
    source = "fmnist"
    target = Target("val_accuracy", 0.9, "max")
    default_batch_size = 128
    default_epochs = 100

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        def build() -> nn.Module:
            return nn.Sequential(
                *conv(1, 32, 5), nn.ReLU(), *maxpool(2, 2),
                *conv(32, 64, 5), nn.ReLU(), *maxpool(2, 2), nn.Flatten(),
                nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Linear(1024, 10),
            )
        return build_seeded(build, _init_2c2d, seed)


def _init_xavier_zero_bias(module: nn.Module, g: torch.Generator) -> None:
    _xavier(module.weight, g, normal=isinstance(module, nn.Conv2d))  # type: ignore[arg-type]
    nn.init.zeros_(module.bias)  # type: ignore[arg-type]


@WORKLOADS.register
class Cifar10_3c3d(_Cifar):
    """DeepOBS ``cifar10_3c3d``: conv 5×5·64 (valid), 3×3·96 (valid), 3×3·128 (same), each
    ReLU + 3×3/2 max-pool; dense 512, 256, 10. Xavier-normal convs, Xavier-uniform dense,
    zero biases; batch 128, 100 epochs; DeepOBS's l2_reg 0.002 = our ``l2`` strength 0.001.
    Target: ``val_accuracy ≥ 0.8``.
    """

    name = "cifar10_3c3d"
    description = "DeepOBS cifar10_3c3d: 3 conv + 3 dense layers on CIFAR-10, augmented."
    source = "cifar10"
    target = Target("val_accuracy", 0.8, "max")
    default_batch_size = 128
    default_epochs = 100

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        def build() -> nn.Module:
            return nn.Sequential(
                *conv(3, 64, 5, same=False), nn.ReLU(), *maxpool(3, 2),
                *conv(64, 96, 3, same=False), nn.ReLU(), *maxpool(3, 2),
                *conv(96, 128, 3), nn.ReLU(), *maxpool(3, 2), nn.Flatten(),
                nn.Linear(3 * 3 * 128, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                nn.Linear(256, 10),
            )
        return build_seeded(build, _init_xavier_zero_bias, seed)


def _init_allcnnc(module: nn.Module, g: torch.Generator) -> None:
    _xavier(module.weight, g, normal=True)  # type: ignore[arg-type]
    nn.init.constant_(module.bias, 0.1)  # type: ignore[arg-type]


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


@WORKLOADS.register
class Cifar100AllCNNC(_Cifar):
    """DeepOBS ``cifar100_allcnnc``: All-CNN-C (Springenberg et al.) with dropout 0.2 on the
    input and 0.5 after each stride-2 block; Xavier-normal weights, biases 0.1; the logits
    are the spatial mean of the last 1×1 conv. Batch 256, 350 epochs; DeepOBS's l2_reg
    0.0005 = our ``l2`` strength 0.00025. Target: ``val_accuracy ≥ 0.5``.
    """

    name = "cifar100_allcnnc"
    description = "DeepOBS cifar100_allcnnc: All-CNN-C on CIFAR-100, augmented; batch 256."
    source = "cifar100"
    target = Target("val_accuracy", 0.5, "max")
    default_batch_size = 256
    default_epochs = 350

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        def build() -> nn.Module:
            return nn.Sequential(
                nn.Dropout(0.2),
                *conv(3, 96, 3), nn.ReLU(), *conv(96, 96, 3), nn.ReLU(),
                *conv(96, 96, 3, stride=2), nn.ReLU(), nn.Dropout(0.5),
                *conv(96, 192, 3), nn.ReLU(), *conv(192, 192, 3), nn.ReLU(),
                *conv(192, 192, 3, stride=2), nn.ReLU(), nn.Dropout(0.5),
                *conv(192, 192, 3, same=False), nn.ReLU(), *conv(192, 192, 1), nn.ReLU(),
                *conv(192, 100, 1), nn.ReLU(), _SpatialMean(),
            )
        return build_seeded(build, _init_allcnnc, seed)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _resnet18() -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU()]
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def _init_resnet(module: nn.Module, g: torch.Generator) -> None:
    """Kaiming-normal (fan-out) convs as torchvision's ResNet; PyTorch's default for the head."""
    w = cast(torch.Tensor, module.weight)
    if isinstance(module, nn.Conv2d):
        w.normal_(0.0, math.sqrt(2.0 / (w.shape[0] * w[0, 0].numel())), generator=g)
    else:
        bound = 1.0 / math.sqrt(w.shape[1])
        w.uniform_(-bound, bound, generator=g)
        cast(torch.Tensor, module.bias).uniform_(-bound, bound, generator=g)


@WORKLOADS.register
class Cifar10ResNet18(_Cifar):
    """ResNet-18 for 32×32 inputs (3×3 stem, no max-pool, BasicBlocks 2-2-2-2 of 64-512
    channels, BatchNorm) on CIFAR-10 with DeepOBS's CIFAR data pipeline; batch 128, 200
    epochs (the common SGD-momentum recipe's length). Target: ``val_accuracy ≥ 0.93``.
    """

    name = "cifar10_resnet18"
    description = "ResNet-18 (CIFAR variant, BatchNorm) on CIFAR-10, augmented; batch 128."
    source = "cifar10"
    target = Target("val_accuracy", 0.93, "max")
    default_batch_size = 128
    default_epochs = 200

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        return build_seeded(_resnet18, _init_resnet, seed)
