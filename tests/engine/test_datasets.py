"""Data-set readers and fetching: original formats parsed, checksums enforced, pickles safe."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _deepobs_data import idx_bytes, write_cifar10

from bench_service.engine import datasets
from bench_service.engine.errors import ConfigError
from bench_service.engine.workloads import build_workload


def test_idx_round_trip_and_header_checks(tmp_path: Path) -> None:
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(datasets.read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "short").write_bytes(idx_bytes(arr)[:-1])
    with pytest.raises(ValueError, match="idx header says"):
        datasets.read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        datasets.read_idx(tmp_path / "junk")


def test_cifar_batches_read_and_a_malicious_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=120)
    x, y = datasets.read_cifar_batch(tmp_path / "cifar-10-batches-py" / "data_batch_1")
    assert x.shape == (120, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (120,)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil"
    bad.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        datasets.read_cifar_batch(bad)
    assert not (tmp_path / "pwned").exists()


def test_fetch_checks_the_published_md5_and_keeps_nothing_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"has MD5 .* expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        datasets.fetch("mnist", opener=lambda url: io.BytesIO(b"not mnist"), say=lambda s: None)
    assert not list((tmp_path / "mnist").iterdir())
    # A source whose checksums are those of the files served: fetched once, then kept.
    payloads = {n: gzip.compress(idx_bytes(np.zeros((1, 28, 28) if "images" in n else (1,),
                                                    np.uint8))) for n in datasets._IDX}
    source = datasets.SOURCES["mnist"]
    files = tuple(datasets.RemoteFile(f.name, f.url, hashlib.md5(payloads[f.name]).hexdigest())
                  for f in source.files)
    monkeypatch.setitem(datasets.SOURCES, "mnist", datasets.Source(
        "mnist", "mnist", files, source.needs, source.homepage))
    served: list[str] = []

    def opener(url: str) -> io.BytesIO:
        served.append(url)
        return io.BytesIO(payloads[url.rsplit("/", 1)[1]])

    assert datasets.fetch("mnist", opener=opener, say=lambda s: None) == tmp_path / "mnist"
    datasets.fetch("mnist", opener=opener, say=lambda s: None)
    assert len(served) == 4  # the second fetch found every file with its checksum


def test_missing_data_names_the_path_and_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        build_workload("cifar10_3c3d").make_data()
    message = str(err.value)
    assert str(tmp_path / "cifar10") in message and "bench data fetch cifar10" in message


def test_quadratic_deep_is_deepobs_problem_at_theta0() -> None:
    """353.4468: the published θ₀ test loss; 347.3582 and 387.7096: Crowded Valley's files of
    the 2nd and 4th Hessian drawn in one process; 228.8895: DeepOBS's PyTorch port."""
    import torch

    from bench_service.engine.workloads import ArchOptions

    expected = {(1, "one_stream"): 353.4468, (2, "one_stream"): 347.3582,
                (4, "one_stream"): 387.7096, (1, "two_streams"): 228.8895}
    for (instance, rng), value in expected.items():
        wl = build_workload("quadratic_deep", {"instance": instance, "rng": rng})
        x, y = wl.data().eval_splits["test"]
        assert x.shape == (896, 100)
        with torch.no_grad():
            got = wl.evaluate(wl.init_model(0, ArchOptions()).eval(), x, y)["val_loss"]
        assert round(got, 4) == value, (instance, rng, got)
    wl = build_workload("quadratic_deep")
    assert wl.data().n_train == 1000 and wl.drop_last and wl.default_batch_size == 128
