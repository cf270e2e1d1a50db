"""Engine tests see small DeepOBS-format data sets (``_deepobs_data``) as ``$BENCH_DATA_DIR``,
so that the workload contract runs over the image workloads without any download."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _deepobs_data import write_all


@pytest.fixture(scope="session", autouse=True)
def small_deepobs_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = write_all(tmp_path_factory.mktemp("bench_data"))
    before = os.environ.get("BENCH_DATA_DIR")
    os.environ["BENCH_DATA_DIR"] = str(root)
    yield str(root)
    if before is None:
        os.environ.pop("BENCH_DATA_DIR", None)
    else:
        os.environ["BENCH_DATA_DIR"] = before
