"""The configuration of one trial: what to train, how, on which seed, for how long.

A ``TrialConfig`` is plain data (JSON-able through ``to_dict``) so that the sweep layer can
hash it into a stable trial identity, ship it to a Ray worker and store it in SQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench_service.engine.errors import ConfigError
from bench_service.vocab import AXES


@dataclass(frozen=True)
class Component:
    """One axis entry: a registered name plus the hyperparameters given for it."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, where: str) -> Component:
        """Accept ``"adam"``, ``{"name": "adam", "params": {...}}`` or a ``Component``."""
        if isinstance(value, Component):
            return value
        if isinstance(value, str) and value:
            return cls(value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"name", "params"}
            if unknown:
                raise ConfigError(where, f"unknown keys {sorted(unknown)}; expected name, params")
            name = value.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.name", f"must be a non-empty string, got {name!r}")
            params = value.get("params") or {}
            if not isinstance(params, Mapping):
                raise ConfigError(f"{where}.params", f"must be a mapping, got {params!r}")
            return cls(name, dict(params))
        raise ConfigError(where, f"must be a name or {{name, params}}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(sorted(self.params.items()))}


@dataclass(frozen=True)
class Budget:
    """How long a trial trains: a number of epochs or a number of optimizer steps."""

    epochs: int | None = None
    steps: int | None = None

    @classmethod
    def parse(cls, value: Any, where: str = "budget") -> Budget:
        if isinstance(value, Budget):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"must be {{epochs: N}} or {{steps: N}}, got {value!r}")
        unknown = set(value) - {"epochs", "steps"}
        if unknown:
            raise ConfigError(where, f"unknown keys {sorted(unknown)}; expected epochs or steps")
        epochs, steps = value.get("epochs"), value.get("steps")
        if epochs is not None and steps is not None:
            raise ConfigError(where, "give epochs or steps, not both")
        for key, v in (("epochs", epochs), ("steps", steps)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{where}.{key}", f"must be a positive integer, got {v!r}")
        return cls(epochs=epochs, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("epochs", self.epochs), ("steps", self.steps)) if v is not None}


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one training run.

    Attributes:
        workload, optimizer, scheduler, regularizer: The four axes.
        seed: Fixes model initialisation, batch order and dropout masks.
        budget: Epochs or steps; empty means the workload's default epochs.
        batch_size: ``None`` takes the workload's default.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        log_every: Record the training loss (and grad norm) every N iterations.
        target: Overrides the workload's target value for time-to-target.
        divergence_factor: Loss above ``factor × first loss`` (or NaN/inf) means diverged.
    """

    workload: Component
    optimizer: Component
    scheduler: Component = field(default_factory=lambda: Component("constant"))
    regularizer: Component = field(default_factory=lambda: Component("none"))
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    batch_size: int | None = None
    device: str = "cpu"
    log_every: int = 10
    target: float | None = None
    divergence_factor: float = 1e4

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        """Build a config from plain data (YAML/JSON), raising ``ConfigError`` on bad fields."""
        if not isinstance(data, Mapping):
            raise ConfigError("", f"a trial config must be a mapping, got {data!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown field; valid: {sorted(known)}")
        for required in ("workload", "optimizer"):
            if required not in data:
                raise ConfigError(required, "is required")
        kwargs: dict[str, Any] = {}
        for axis in AXES:
            if axis in data:
                kwargs[axis] = Component.parse(data[axis], axis)
        if "budget" in data:
            kwargs["budget"] = Budget.parse(data["budget"])
        for key in ("seed", "batch_size", "log_every"):
            if key in data and data[key] is not None:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(key, f"must be an integer, got {v!r}")
                if key != "seed" and v < 1:
                    raise ConfigError(key, f"must be >= 1, got {v!r}")
                kwargs[key] = v
        if "device" in data:
            dev = data["device"]
            if not isinstance(dev, str) or not (dev == "cpu" or dev.startswith("cuda")):
                raise ConfigError("device", f"must be 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
            kwargs["device"] = dev
        for key in ("target", "divergence_factor"):
            if key in data and data[key] is not None:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ConfigError(key, f"must be a number, got {v!r}")
                kwargs[key] = float(v)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload.to_dict(),
            "optimizer": self.optimizer.to_dict(),
            "scheduler": self.scheduler.to_dict(),
            "regularizer": self.regularizer.to_dict(),
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "batch_size": self.batch_size,
            "device": self.device,
            "log_every": self.log_every,
            "target": self.target,
            "divergence_factor": self.divergence_factor,
        }

    def config_hash(self) -> str:
        """Stable identity of this trial (config and seed): hex SHA-256 of canonical JSON."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
