"""DeepOBS's ``quadratic_deep``: a 100-d noisy quadratic with a deep-learning-like spectrum.

Faithful to DeepOBS (Schneider, Balles & Hennig, ICLR 2019) as the published results ran it,
so that our curves sit on the same scale as every paper's (Crowded Valley's included):

* **Hessian** ``Q = Rᵀ D R``: 90 eigenvalues ``U(0, 1)`` and 10 ``U(30, 60)``, then a Haar
  rotation ``R`` (Diaconis & Shahshahani's subgroup algorithm), all drawn from ONE
  ``numpy.random.RandomState(42)`` stream, eigenvalues first. DeepOBS's TensorFlow module
  holds that stream at module level, so each further problem built in one process draws the
  next Hessian from where the last one stopped: ``instance`` says which draw (1 = a fresh
  process, θ₀ test loss 353.4468; Crowded Valley's files also hold instances 2 and 4).
  ``rng: two_streams`` gives DeepOBS's later PyTorch port instead, which draws eigenvalues and
  rotation from two fresh ``RandomState(42)``s: a different problem (θ₀ test loss 228.89).
* **Data**: 1,000 samples ``x ~ N(0, 0.6²·I)`` for each split, float32, from
  ``RandomState(42)`` (train), ``44`` (validation) and ``43`` (test); the loss of a sample is
  ``½ (θ - x)ᵀ Q (θ - x)``; ``θ₀ = 1`` for every seed (seeds change the batch order only).
* **Batches** of 128 with the remainder dropped, every split: an epoch is 7 steps, and the
  evaluated validation and test sets are their first 896 samples (unshuffled), as DeepOBS's
  ``drop_remainder=True`` evaluation sees them. The train-eval set is the first 896 training
  samples (DeepOBS takes a reshuffled 896 each time; the mean differs by well under 1 %).
* **Budget** 100 epochs; no regularization.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.workloads._registry import WORKLOADS
from bench_service.engine.workloads.base import ArchOptions, Dataset, Target, Workload

DIM = 100
N_SAMPLES = 1000
NOISE = 0.6
BATCH_SIZE = 128
#: RandomState seeds of DeepOBS's quadratic data set, per split.
SPLIT_SEEDS = {"train": 42, "valid": 44, "test": 43}
#: The Hessian's stream seed (DeepOBS's module-level ``RandomState(42)``).
HESSIAN_SEED = 42


def random_rotation(dim: int, rng: np.random.RandomState) -> np.ndarray:
    """A Haar-random rotation in SO(dim), drawn exactly as DeepOBS draws it.

    The subgroup algorithm: a uniform 2-d rotation, then ``dim - 2`` Householder embeddings
    of a uniform direction on the sphere; the sign flip at the end fixes the determinant.
    The draws' order (one uniform, then one normal vector of each size 3..dim) is what makes
    the matrix the same as DeepOBS's for the same stream.
    """
    t = 2.0 * np.pi * rng.uniform()
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    for d in range(2, dim):
        v = rng.normal(size=(d + 1, 1))
        v = v / np.sqrt(v.T @ v)
        e = np.zeros((d + 1, 1))
        e[0, 0] = 1.0
        x = (e - v) / np.sqrt((e - v).T @ (e - v))
        embedded = np.zeros((d + 1, d + 1))
        embedded[0, 0] = 1.0
        embedded[1:, 1:] = rot
        rot = embedded - 2.0 * np.outer(x, x.T @ embedded)
    return -rot


def _draw_hessian(rng: np.random.RandomState, rot_rng: np.random.RandomState) -> np.ndarray:
    eigenvalues = np.concatenate((rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)))
    rot = random_rotation(DIM, rot_rng)
    return rot.T @ np.diag(eigenvalues) @ rot


def deep_hessian(instance: int = 1, stream: str = "one_stream") -> np.ndarray:
    """The Hessian of ``quadratic_deep``: the ``instance``-th draw of DeepOBS's stream."""
    if stream == "two_streams":
        return _draw_hessian(np.random.RandomState(HESSIAN_SEED),
                             np.random.RandomState(HESSIAN_SEED))
    rng = np.random.RandomState(HESSIAN_SEED)
    hessian = _draw_hessian(rng, rng)
    for _ in range(instance - 1):
        hessian = _draw_hessian(rng, rng)
    return hessian


def split_samples(split: str) -> torch.Tensor:
    """The 1,000 float32 samples of one split (``train``, ``valid`` or ``test``)."""
    rng = np.random.RandomState(SPLIT_SEEDS[split])
    return torch.from_numpy(np.float32(rng.normal(0.0, NOISE, (N_SAMPLES, DIM))))


class _DeepQuadratic(nn.Module):
    """``θ`` (one row, as DeepOBS's ``theta`` of shape [1, 100]); per-sample losses out."""

    hessian: torch.Tensor

    def __init__(self, hessian: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.ones(DIM))
        self.register_buffer("hessian", hessian)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = self.theta - x
        return 0.5 * ((diff @ self.hessian) * diff).sum(-1)


@WORKLOADS.register
class QuadraticDeep(Workload):
    """DeepOBS ``quadratic_deep`` (see the module docstring for every detail it follows).

    Target: ``val_loss ≤ 90``; SGD at lr 0.01 gets there within its 100 epochs (86.0 in
    Crowded Valley's runs), Adam at lr 1e-3 does not (105.5).
    """

    name = "quadratic_deep"
    description = (
        "DeepOBS quadratic_deep: ½(θ-x)ᵀQ(θ-x) in 100-d, Q with 90 eigenvalues in (0,1) and "
        "10 in (30,60), rotated; batch 128, 100 epochs, θ₀ = 1; as DeepOBS 1.x ran it."
    )
    hyperparams = ParamSpace((
        HyperParam("instance", 1, kind="int", minimum=1, maximum=1000,
                   help="which draw of DeepOBS's Hessian stream (1: a fresh process)"),
        HyperParam("rng", "one_stream", kind="choice", choices=("one_stream", "two_streams"),
                   help="one_stream: DeepOBS 1.x (TF, published results); two_streams: "
                        "its PyTorch port"),
    ))
    target = Target("val_loss", 90.0, "min")
    default_batch_size = BATCH_SIZE
    default_epochs = 100
    seeded_init = False
    drop_last = True
    evaluate_at_start = True

    def make_data(self) -> Dataset:
        used = (N_SAMPLES // BATCH_SIZE) * BATCH_SIZE  # what drop_remainder evaluates
        train = split_samples("train")
        valid, test = split_samples("valid")[:used], split_samples("test")[:used]
        return Dataset(
            x_train=train, y_train=torch.zeros(N_SAMPLES),
            x_val=valid, y_val=torch.zeros(used),
            eval_splits={"test": (test, torch.zeros(used)),
                         "train_eval": (train[:used], torch.zeros(used))},
        )

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        hessian = deep_hessian(int(self.params["instance"]), str(self.params["rng"]))
        return _DeepQuadratic(torch.from_numpy(np.float32(hessian)))

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of the per-sample losses (``target`` is a placeholder)."""
        return output.mean()

    def regularized_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.theta]  # type: ignore[list-item]
