"""Small data sets in exactly the original file formats, for the DeepOBS image workloads.

``write_all(root)`` writes, under ``root`` (what ``$BENCH_DATA_DIR`` points at):
``mnist/`` and ``fmnist/`` with the four gzip ``idx`` files of each,
``cifar10/cifar-10-batches-py/``
with ``data_batch_1..5`` and ``test_batch`` and ``cifar100/cifar-100-python/`` with ``train`` and
``test``: pickles of ``{b"data": uint8 array [N, 3072], b"labels"/b"fine_labels": [...]}``
as the originals hold them (protocol 2, numpy arrays). The images are learnable (each class
brightens its own block of pixels), so a few optimizer steps lower the loss.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in the idx format: magic 0 0 0x08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def images(n: int, classes: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """``n`` images of ``classes`` classes, each class with its own bright block."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.integers(0, 100, (n, *shape)).astype(np.uint8)
    flat = x.reshape(n, -1)
    block = flat.shape[1] // classes
    for i, c in enumerate(labels):
        flat[i, c * block:(c + 1) * block] = 250
    return x, labels


def write_mnist_like(folder: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = images(n_train, 10, (28, 28), seed)
    xt, yt = images(n_test, 10, (28, 28), seed + 1)
    for name, arr in zip(IDX, (xs, ys, xt, yt), strict=True):
        (folder / name).write_bytes(gzip.compress(idx_bytes(arr)))


def _batch(path: Path, x: np.ndarray, y: np.ndarray, label_key: bytes) -> None:
    doc = {b"batch_label": b"test batch", label_key: [int(v) for v in y],
           b"data": x.reshape(len(x), 3072), b"filenames": [b"x.png"] * len(x)}
    path.write_bytes(pickle.dumps(doc, protocol=2))


def write_cifar10(folder: Path, per_batch: int = 40, n_test: int = 40) -> None:
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _batch(root / f"data_batch_{i}", *images(per_batch, 10, (3, 32, 32), i), b"labels")
    _batch(root / "test_batch", *images(n_test, 10, (3, 32, 32), 9), b"labels")


def write_cifar100(folder: Path, n_train: int = 200, n_test: int = 40) -> None:
    root = folder / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    # Ten of the hundred labels in use, so that a few steps of the slow-starting All-CNN-C
    # already lower the loss (the unused classes' logits fall).
    _batch(root / "train", *images(n_train, 10, (3, 32, 32), 5), b"fine_labels")
    _batch(root / "test", *images(n_test, 10, (3, 32, 32), 6), b"fine_labels")


def write_all(root: Path) -> Path:
    write_mnist_like(root / "mnist")
    write_mnist_like(root / "fmnist", seed=3)
    write_cifar10(root / "cifar10")
    write_cifar100(root / "cifar100")
    return root
