"""Human-readable names and units for metrics, axes and durations.

Charts and tables say "validation loss" and "wall-clock time (s)", not ``val_loss`` and
``wall_time``; the raw names stay in the data downloads, where they match the database.
"""

from __future__ import annotations

import math
from datetime import timedelta

#: Metric name → (label, unit or "").
METRICS: dict[str, tuple[str, str]] = {
    "train_loss": ("training loss", ""),
    "val_loss": ("validation loss", ""),
    "val_accuracy": ("validation accuracy", "fraction"),
    "val_perplexity": ("validation perplexity", ""),
    "lr": ("learning rate", ""),
    "grad_norm": ("gradient norm", "L2"),
    "param_x": ("parameter x", ""),
    "param_y": ("parameter y", ""),
}
#: x-axis choice → label with unit.
X_AXES: dict[str, str] = {
    "step": "optimizer steps (updates)",
    "epoch": "epoch",
    "wall_time": "wall-clock time since trial start (s)",
}
SCOPES: dict[str, str] = {"step": "per step", "epoch": "per epoch"}
#: Axis choice (grouping / facets) → label.
AXES: dict[str, str] = {
    "optimizer": "optimizer",
    "scheduler": "LR schedule",
    "regularizer": "regularizer",
    "workload": "workload",
    "cell": "cell (optimizer / schedule / regularizer)",
    "seed": "seed",
    "status": "status",
}


def metric_label(name: str, *, unit: bool = True) -> str:
    """``val_accuracy`` → ``validation accuracy (fraction)``; unknown names stay as they are."""
    label, u = METRICS.get(name, (name.replace("_", " "), ""))
    return f"{label} ({u})" if unit and u else label


def metric_option(name: str, scope: str) -> str:
    """Label of a (metric, scope) choice: ``training loss, per step``."""
    return f"{metric_label(name, unit=False)}, {SCOPES.get(scope, scope)}  ·  {name}"


def duration(seconds: float | None) -> str:
    """``3725`` → ``1 h 02 min``; ``42.3`` → ``42 s``; missing → ``""``."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    td = timedelta(seconds=round(seconds))
    hours, rem = divmod(td.seconds + td.days * 86400, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"
