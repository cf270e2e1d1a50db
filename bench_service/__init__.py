"""bench_service: benchmark optimizers, LR schedules and regularizers fairly and reproducibly.

The public Python API is small: ``run_trial`` (train one config), ``load_trials`` and
``load_curves`` (results as DataFrames). Everything else lives in the layer packages:
``engine`` (PyTorch), ``store`` (SQL), ``sweep`` (specs, tuning), ``cluster`` (Ray).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run_trial": "bench_service.engine.runner",
    "TrialConfig": "bench_service.engine.config",
    "load_trials": "bench_service.results",
    "load_curves": "bench_service.results",
}
__all__ = ["TrialConfig", "__version__", "load_curves", "load_trials", "run_trial"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
