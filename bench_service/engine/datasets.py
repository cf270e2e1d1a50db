"""Real data sets (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100): fetched once, read safely.

Files are downloaded once (``bench data fetch NAME``) from their official sources into the
cache directory ``$BENCH_DATA_DIR`` (default ``~/.cache/bench_service/data``), each checked
against its published MD5 before it is kept; nothing downloads at run time or in tests. The
readers parse the original formats themselves (no torchvision): MNIST-style ``idx`` files
(gzip) and CIFAR's python batches, which are pickles: they are read with an unpickler that
builds only plain containers, numbers, strings and bytes (no class, no function, no global),
so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_service.engine.errors import ConfigError

#: Environment variable naming the cache directory.
DATA_DIR_ENV = "BENCH_DATA_DIR"


def data_dir() -> Path:
    """The cache directory: ``$BENCH_DATA_DIR``, else ``~/.cache/bench_service/data``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "bench_service" / "data"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it comes from and its published MD5."""

    name: str
    url: str
    md5: str


@dataclass(frozen=True)
class Source:
    """A data set: its folder under the cache, its files, and what must exist once fetched."""

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    #: Paths (relative to the folder) that the readers need; archives are unpacked to them.
    needs: tuple[str, ...]
    homepage: str

    def path(self) -> Path:
        return data_dir() / self.folder

    def missing(self) -> list[str]:
        root = self.path()
        return [n for n in self.needs if not (root / n).is_file()]

    def require(self, workload: str) -> Path:
        """The folder, or a ``ConfigError`` saying where the data should be and how to get it."""
        if self.missing():
            raise ConfigError(
                "workload", f"{workload}: data set {self.name} not found at {self.path()} "
                f"(missing {self.missing()[0]}); fetch it once with `bench data fetch "
                f"{self.name}` (or set ${DATA_DIR_ENV} to where it is)",
            )
        return self.path()


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_MNIST_MD5 = ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")
_FMNIST_MD5 = ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
               "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")

SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist", "mnist",
        tuple(RemoteFile(n, _MNIST_URL + n, m) for n, m in zip(_IDX, _MNIST_MD5, strict=True)),
        _IDX, "http://yann.lecun.com/exdb/mnist/",
    ),
    "fmnist": Source(
        "fmnist", "fmnist",
        tuple(RemoteFile(n, _FMNIST_URL + n, m) for n, m in zip(_IDX, _FMNIST_MD5,
                                                                strict=True)),
        _IDX, "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": Source(
        "cifar10", "cifar10",
        (RemoteFile("cifar-10-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "c58f30108f718f92721af3b95e74349a"),),
        tuple(f"cifar-10-batches-py/{n}" for n in
              (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Source(
        "cifar100", "cifar100",
        (RemoteFile("cifar-100-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    "eb9058c3a382ffc7106e4002c42a8d85"),),
        ("cifar-100-python/train", "cifar-100-python/test"),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ConfigError("data", f"unknown data set {name!r}; valid: {', '.join(SOURCES)}")
    return SOURCES[name]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Opener = Callable[[str], Any]


def fetch(name: str, *, opener: Opener | None = None,
          say: Callable[[str], None] = print) -> Path:
    """Download ``name``'s files into the cache (once), check their MD5s, unpack archives.

    A file already there with the right checksum is not downloaded again; a download whose
    checksum is wrong is deleted and reported, never kept. ``opener`` (a URL → file-like
    function, default ``urllib.request.urlopen``) lets tests serve files from disk.
    """
    source = get_source(name)
    root = source.path()
    root.mkdir(parents=True, exist_ok=True)
    open_url = opener or (lambda url: urllib.request.urlopen(url, timeout=60))
    for remote in source.files:
        target = root / remote.name
        if target.is_file() and md5_of(target) == remote.md5:
            say(f"{remote.name}: already there, checksum ok")
        else:
            partial = target.with_name(target.name + ".part")
            say(f"{remote.name}: downloading {remote.url}")
            with open_url(remote.url) as response, partial.open("wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
            got = md5_of(partial)
            if got != remote.md5:
                partial.unlink()
                raise ConfigError("data", f"{remote.name} from {remote.url} has MD5 {got}, "
                                  f"expected {remote.md5}: not kept; try again later")
            partial.replace(target)
            say(f"{remote.name}: checksum ok ({remote.md5})")
        if remote.name.endswith(".tar.gz") and source.missing():
            _unpack(target, root)
    if source.missing():
        raise ConfigError("data", f"{name}: still missing {source.missing()[0]} after fetching")
    return root


def _unpack(archive: Path, root: Path) -> None:
    """Unpack regular files only, and only inside ``root`` (no links, no ``..``)."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            dest = (root / member.name).resolve()
            if not member.isfile() or not dest.is_relative_to(root.resolve()):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            assert extracted is not None
            with extracted, dest.open("wb") as out:
                out.write(extracted.read())


# --------------------------------------------------------------------------- readers
_IDX_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An ``idx`` file (optionally gzip): magic ``0 0 type ndim``, big-endian dims, data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an idx file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: idx header says {dims}, data has {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def read_mnist_like(name: str, workload: str) -> tuple[np.ndarray, ...]:
    """``(train_images, train_labels, test_images, test_labels)``, images uint8 [N, 28, 28]."""
    root = get_source(name).require(workload)
    return tuple(read_idx(root / n) for n in _IDX)


#: The only globals a CIFAR batch may name: what numpy needs to rebuild a plain array.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds containers, numbers, strings, bytes and numpy arrays; refuses other globals."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: ``data`` uint8 [N, 3072] → [N, 3, 32, 32], and its labels."""
    with path.open("rb") as fh:
        batch = _SafeUnpickler(fh, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: not a CIFAR batch")
    keys = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = keys.get("data")
    labels = keys.get("labels", keys.get("fine_labels"))
    if not isinstance(data, (np.ndarray, bytes, bytearray, list)):
        raise ValueError(f"{path}: no data in CIFAR batch")
    images = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) \
        else np.asarray(data)
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: CIFAR data must be uint8, got {images.dtype}")
    if images.size % 3072:
        raise ValueError(f"{path}: CIFAR data is not a multiple of 3072 bytes")
    if labels is None:
        raise ValueError(f"{path}: no labels in CIFAR batch")
    y = np.asarray(labels, dtype=np.int64)
    x = images.reshape(-1, 3, 32, 32)
    if len(x) != len(y):
        raise ValueError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def read_cifar(name: str, workload: str) -> tuple[np.ndarray, ...]:
    """``(train_images, train_labels, test_images, test_labels)``, images uint8 [N,3,32,32]."""
    source = get_source(name)
    root = source.require(workload)
    *train_files, test_file = source.needs
    parts = [read_cifar_batch(root / f) for f in train_files]
    x_test, y_test = read_cifar_batch(root / test_file)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            x_test, y_test)
