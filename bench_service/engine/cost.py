"""The true cost of an optimizer step: its time, its state and the memory of training.

AlgoPerf ranks by wall-clock because an update that costs twice as much must win twice as
much per step; the runner therefore times every ``optimizer.step()`` (synchronising the
device on CUDA, so the kernels' time is inside the measurement, not the next step's) and
reports the mean and the 90th percentile. The first step is left out when there are
others: it allocates the state (and SOAP/Shampoo/Kron their preconditioners), a one-off.

Memory: the optimizer's state in bytes (every tensor reachable from ``optimizer.state``,
counted once) and the peak memory of training: ``torch.cuda.max_memory_allocated`` on a GPU,
or on CPU the tensor bytes of parameters + gradients + state (what the optimizer choice
changes; the CPU allocator keeps no peak of its own that could be read per trial).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state`` (moments, preconditioners, step counts)."""
    return _nbytes(_tensors(list(optimizer.state.values())))


def training_bytes(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> int:
    """Tensor bytes of parameters, their gradients and the optimizer's state."""
    grads = [p.grad for p in params if p.grad is not None]
    return _nbytes([*params, *grads, *_tensors(list(optimizer.state.values()))])


@dataclass
class StepCost:
    """Times ``optimizer.step()`` and tracks memory over one trial."""

    device: torch.device
    times: list[float] = field(default_factory=list)
    state: int = 0
    peak_cpu: int = 0

    def __post_init__(self) -> None:
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def timed_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, timed (device-synchronised on CUDA)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        optimizer.step()
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter() - t0)

    def sample_memory(
        self, params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer
    ) -> None:
        """Record state size and CPU training bytes now (after the first and last steps)."""
        self.state = max(self.state, state_bytes(optimizer))
        self.peak_cpu = max(self.peak_cpu, training_bytes(params, optimizer))

    def summary(self) -> dict[str, float | int | None]:
        """``step_time_mean``, ``step_time_p90`` (s), ``optimizer_state_bytes``,
        ``peak_memory_bytes`` (``None`` where nothing was measured)."""
        times = self.times[1:] if len(self.times) > 1 else self.times
        out: dict[str, float | int | None] = {
            "step_time_mean": None, "step_time_p90": None,
            "optimizer_state_bytes": self.state if self.times else None,
            "peak_memory_bytes": None,
        }
        if times:
            ordered = sorted(times)
            out["step_time_mean"] = math.fsum(times) / len(times)
            out["step_time_p90"] = ordered[min(len(ordered) - 1,
                                               math.ceil(0.9 * len(ordered)) - 1)]
            out["peak_memory_bytes"] = (int(torch.cuda.max_memory_allocated(self.device))
                                        if self.cuda else self.peak_cpu)
        return out
