"""The trial engine (pure PyTorch): registries, workloads and the trial runner.

Nothing here imports Ray or SQL; the sweep, store and cluster layers build on this.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy attributes (PEP 562): importing one engine module does not import them all.
_EXPORTS = {
    "Budget": "bench_service.engine.config",
    "Component": "bench_service.engine.config",
    "ConfigError": "bench_service.engine.errors",
    "HyperParam": "bench_service.engine.hparams",
    "IncompatibleError": "bench_service.engine.errors",
    "MetricPoint": "bench_service.engine.records",
    "OPTIMIZERS": "bench_service.engine.optimizers",
    "OptimizerEntry": "bench_service.engine.optimizers",
    "ParamSpace": "bench_service.engine.hparams",
    "PreparedTrial": "bench_service.engine.runner",
    "REGULARIZERS": "bench_service.engine.regularizers",
    "RegularizerEntry": "bench_service.engine.regularizers",
    "SCHEDULERS": "bench_service.engine.schedulers",
    "SchedulerEntry": "bench_service.engine.schedulers",
    "StopTrial": "bench_service.engine.errors",
    "TrialCancelled": "bench_service.engine.errors",
    "TrialConfig": "bench_service.engine.config",
    "TrialPruned": "bench_service.engine.errors",
    "TrialResult": "bench_service.engine.records",
    "UnknownNameError": "bench_service.engine.errors",
    "WORKLOADS": "bench_service.engine.workloads",
    "Workload": "bench_service.engine.workloads",
    "build_optimizer": "bench_service.engine.optimizers",
    "build_scheduler": "bench_service.engine.schedulers",
    "build_workload": "bench_service.engine.workloads",
    "prepare_trial": "bench_service.engine.runner",
    "run_trial": "bench_service.engine.runner",
}

__all__ = [
    "OPTIMIZERS",
    "REGULARIZERS",
    "SCHEDULERS",
    "WORKLOADS",
    "Budget",
    "Component",
    "ConfigError",
    "HyperParam",
    "IncompatibleError",
    "MetricPoint",
    "OptimizerEntry",
    "ParamSpace",
    "PreparedTrial",
    "RegularizerEntry",
    "SchedulerEntry",
    "StopTrial",
    "TrialCancelled",
    "TrialConfig",
    "TrialPruned",
    "TrialResult",
    "UnknownNameError",
    "Workload",
    "build_optimizer",
    "build_scheduler",
    "build_workload",
    "prepare_trial",
    "run_trial",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
