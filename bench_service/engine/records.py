"""What a trial produces: metric points streamed while it runs and a final result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["completed", "diverged", "failed", "pruned", "cancelled"]
Scope = Literal["step", "epoch"]

#: Metric names every workload records (workloads may add more, e.g. ``val_perplexity``).
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
LR = "lr"
GRAD_NORM = "grad_norm"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one metric.

    ``scope`` says what the point summarises: ``step`` points are taken every ``log_every``
    iterations (the mean training loss over those iterations, the gradient norm of the last
    one); ``epoch`` points once per epoch (validation metrics, the epoch's mean training loss,
    the learning rate used during that epoch). ``step`` is the number of optimizer updates done
    when the point was taken; ``epoch`` the 0-based epoch it belongs to.
    """

    name: str
    value: float
    step: int
    epoch: int
    wall_time: float
    scope: Scope = "step"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __reduce__(self) -> tuple[type[MetricPoint], tuple[Any, ...]]:
        # Pickled as a constructor call: ~20x cheaper than the default of a slotted frozen
        # dataclass, and sweeps ship hundreds of points per trial between processes.
        return (MetricPoint,
                (self.name, self.value, self.step, self.epoch, self.wall_time, self.scope))


@dataclass
class TrialResult:
    """The outcome of one trial; ``metrics`` is the full record, in the order it was taken."""

    status: Status
    metrics: list[MetricPoint] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    wall_time: float = 0.0
    examples_per_sec: float = 0.0
    diverged_step: int | None = None
    error: str | None = None
    step_to_target: int | None = None
    time_to_target: float | None = None
    device: str = "cpu"
    #: Mean and 90th percentile of ``optimizer.step()`` in seconds (device-synchronised on
    #: CUDA; the first step, which allocates the state, left out): see ``engine.cost``.
    step_time_mean: float | None = None
    step_time_p90: float | None = None
    #: Bytes of the optimizer's state tensors.
    optimizer_state_bytes: int | None = None
    #: CUDA peak allocated bytes on a GPU; on CPU, bytes of parameters + gradients + state.
    peak_memory_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def curve(self, name: str, scope: Scope | None = None) -> list[tuple[int, float]]:
        """``(step, value)`` pairs of one metric, optionally of one scope."""
        return [
            (p.step, p.value)
            for p in self.metrics
            if p.name == name and (scope is None or p.scope == scope)
        ]

    def epoch_curve(self, name: str) -> list[float]:
        """Per-epoch values of one metric, in epoch order."""
        return [p.value for p in self.metrics if p.name == name and p.scope == "epoch"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = [p.to_dict() for p in self.metrics]
        return d
