"""The project's one vocabulary: grid axes, statuses, roles, metric direction.

Every layer (engine, store, sweep, cluster, CLI, API, dashboard) spells these the same way by
importing them from here; this module imports nothing of the project and nothing heavy (no
torch, Ray, Optuna or SQLAlchemy), so the lightest command can use it.
"""

from __future__ import annotations

from typing import Literal

# --- axes of a sweep grid -------------------------------------------------------------------
#: The four axes of a sweep grid, singular (a trial's column / config key), in grid order.
AXES: tuple[str, ...] = ("workload", "optimizer", "scheduler", "regularizer")
#: The same axes as a spec spells its lists (``workloads: [...]``), in the same order.
SPEC_AXES: tuple[str, ...] = tuple(f"{a}s" for a in AXES)
#: Spec list name -> trial column name (``"optimizers"`` -> ``"optimizer"``).
AXIS_OF_SPEC: dict[str, str] = dict(zip(SPEC_AXES, AXES, strict=True))
#: The axes whose entries carry hyperparameters that tuning searches (not the workload).
TUNED_AXES: tuple[str, ...] = AXES[1:]
#: ``TUNED_AXES`` as a spec spells them.
TUNED_SPEC_AXES: tuple[str, ...] = SPEC_AXES[1:]

# --- statuses -------------------------------------------------------------------------------
#: Statuses of a sweep, in lifecycle order.
SWEEP_STATUSES: tuple[str, ...] = ("pending", "running", "completed", "cancelled", "failed")
#: Sweep statuses after which the sweep is not running any more (``finished_at`` is set).
SWEEP_TERMINAL: frozenset[str] = frozenset({"completed", "cancelled", "failed"})

#: Statuses of a trial: ``pending``/``running`` plus the engine's ``TrialResult.status`` values.
TRIAL_STATUSES: tuple[str, ...] = (
    "pending", "running", "completed", "diverged", "failed", "pruned", "cancelled",
)
#: Statuses a trial attempt can end with (``finished_at`` is set); ``cancelled`` included.
TRIAL_ENDED: frozenset[str] = frozenset(TRIAL_STATUSES) - {"pending", "running"}
#: Statuses that are a trial's own result: it ran to an outcome the sweep keeps (a cancelled
#: trial did not; it runs again on resume). These count as *done*.
TRIAL_FINISHED: frozenset[str] = frozenset({"completed", "diverged", "failed", "pruned"})
#: Statuses a resume runs again: everything that has not ended on its own.
RUNNABLE_STATUSES: tuple[str, ...] = ("pending", "running", "failed", "cancelled")

#: States of the Ray Job that runs a sweep submitted to the service (``bench serve``).
JOB_STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
#: Job states after which the job runs no more.
JOB_TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

#: Why a trial exists: a grid cell, a tuning trial (from Optuna), a final re-run, or a
#: published result read in by `bench import` (it never runs).
ROLES: tuple[str, ...] = ("grid", "tuning", "final", "imported")
#: What a metric point summarises (see ``bench_service.engine.records.MetricPoint``).
SCOPES: tuple[str, ...] = ("step", "epoch")

# --- metric direction ----------------------------------------------------------------------
Mode = Literal["min", "max"]

#: Metric name stems where higher is better; every other metric (losses, perplexity, time,
#: steps) is lower-is-better.
_HIGHER_IS_BETTER_STEMS: tuple[str, ...] = ("accuracy", "acc", "f1", "auc", "precision",
                                            "recall", "bleu", "score")


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (``val_accuracy``: yes, ``val_loss``: no).

    The stem after a ``train_``/``val_``/``test_`` prefix decides, so ``val_accuracy`` and
    ``test_acc`` are higher-is-better and ``val_perplexity`` is not.
    """
    stem = metric.lower()
    for prefix in ("train_", "val_", "valid_", "test_", "final_", "best_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    return stem in _HIGHER_IS_BETTER_STEMS


def metric_mode(metric: str) -> Mode:
    """``"max"`` for a higher-is-better metric, else ``"min"`` (Optuna: maximize / minimize)."""
    return "max" if higher_is_better(metric) else "min"


__all__ = [
    "AXES", "AXIS_OF_SPEC", "JOB_STATES", "JOB_TERMINAL", "ROLES", "RUNNABLE_STATUSES",
    "SCOPES", "SPEC_AXES",
    "SWEEP_STATUSES", "SWEEP_TERMINAL", "TRIAL_ENDED", "TRIAL_FINISHED", "TRIAL_STATUSES",
    "TUNED_AXES", "TUNED_SPEC_AXES", "Mode", "higher_is_better", "metric_mode",
]
