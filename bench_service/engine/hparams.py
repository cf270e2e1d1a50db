"""Hyperparameter declarations shared by every registry.

Each registered algorithm declares its hyperparameters once: default, validity bounds (what
the algorithm accepts at all) and search range (where tuning looks). The sweep layer turns the
search range into an Optuna distribution; the engine only validates and fills defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench_service.engine.errors import ConfigError
from bench_service.engine.registry import closest

_KINDS = ("float", "int", "bool", "choice", "list")

#: Largest finite float32 (``torch.finfo(torch.float32).max``), without importing torch.
FLOAT32_MAX = 3.4028234663852886e38
#: Smallest positive normal float32 (``torch.finfo(torch.float32).tiny``).
FLOAT32_TINY = 1.1754943508222875e-38
#: Largest int64 (SQL ``BIGINT``).
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class HyperParam:
    """One hyperparameter of an algorithm.

    Attributes:
        name: Key in the ``params`` mapping.
        default: Value used when the user gives none (``None`` means "derived at build time",
            e.g. a cosine period that defaults to the whole budget).
        kind: ``float``, ``int``, ``bool``, ``choice`` or ``list`` (a list of numbers).
        low, high: Search range for tuning; ``None`` means "not tuned by default".
        log: Sample the search range on a log scale (learning rates, decay strengths).
        minimum, maximum: Validity bounds, checked on every value the user gives.
        exclusive_minimum, exclusive_maximum: Whether the bounds themselves are invalid.
        choices: Allowed values for ``kind="choice"``.
        help: One line for docs and error messages.
    """

    name: str
    default: Any
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"HyperParam {self.name}: kind must be one of {_KINDS}")

    @property
    def tunable(self) -> bool:
        """Whether tuning searches this parameter by default."""
        return self.low is not None and self.high is not None

    def validate(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this parameter's kind, or raise ``ConfigError``.

        Besides the declared bounds, every number must be representable where it goes: an
        ``int`` parameter within int64 (SQL ``BIGINT``), a ``float`` parameter finite and
        within float32 (the dtype of the models' tensors), so that ``lr: 1e308`` or
        ``lr: 10^400`` is refused here instead of overflowing in a worker.
        """
        path = f"{where}.{self.name}" if where else self.name
        if value is None:
            if self.default is None:
                return None
            raise ConfigError(path, "must not be null")
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(path, f"must be true or false, got {shown(value)}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigError(
                    path, f"must be one of {list(self.choices)}, got {shown(value)}"
                )
            return value
        if self.kind == "list":
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(
                    path, f"must be a non-empty list of numbers, got {shown(value)}"
                )
            return [self._number(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return self._number(value, path)

    def _number(self, value: Any, path: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, f"must be finite, got {shown(value)}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(path, f"must be an integer, got {shown(value)}")
            value = int(value)
        # Declared bounds first (exact even for huge ints), then what the value is stored as.
        if self.minimum is not None:
            bad = value <= self.minimum if self.exclusive_minimum else value < self.minimum
            if bad:
                op = ">" if self.exclusive_minimum else ">="
                raise ConfigError(path, f"must be {op} {self.minimum:g}, got {shown(value)}")
        if self.maximum is not None:
            bad = value >= self.maximum if self.exclusive_maximum else value > self.maximum
            if bad:
                op = "<" if self.exclusive_maximum else "<="
                raise ConfigError(path, f"must be {op} {self.maximum:g}, got {shown(value)}")
        if self.kind == "int":
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise ConfigError(path, f"must fit in 64 bits (|x| < 2^63), got {shown(value)}")
            return value
        if abs(value) > FLOAT32_MAX:
            raise ConfigError(
                path, f"must be at most {FLOAT32_MAX:.4g} in magnitude (float32), "
                f"got {shown(value)}",
            )
        value = float(value)
        if 0.0 < abs(value) < FLOAT32_TINY:
            raise ConfigError(
                path, f"must be 0 or at least {FLOAT32_TINY:.4g} in magnitude (float32), "
                f"got {shown(value)}",
            )
        return value


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message, bounded: a huge integer as its order of magnitude."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        exponent = math.floor(math.log10(abs(value)))
        mantissa = abs(value) // 10 ** (exponent - 3) / 1000
        return f"{'-' if value < 0 else ''}{mantissa:g}e{exponent} (an integer)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ParamSpace:
    """The ordered hyperparameters of one algorithm."""

    params: tuple[HyperParam, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[HyperParam]:
        return iter(self.params)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str) -> HyperParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve(self, given: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
        """Validate ``given`` and fill in defaults; unknown keys are errors."""
        given = dict(given or {})
        known = set(self.names())
        for key in given:
            if key not in known:
                hint = closest(str(key), known)
                key = shown(key) if not isinstance(key, str) else key[:60]
                raise ConfigError(
                    f"{where}.{key}" if where else key,
                    f"unknown hyperparameter{hint}; valid: {sorted(known) or 'none'}",
                )
        out: dict[str, Any] = {}
        for p in self.params:
            out[p.name] = p.validate(given[p.name], where) if p.name in given else p.default
        return out


def lr_param(default: float, low: float = 1e-5, high: float = 1.0) -> HyperParam:
    """The learning rate every optimizer declares: positive, searched on a log scale."""
    return HyperParam(
        "lr", default, low=low, high=high, log=True, minimum=0.0, exclusive_minimum=True,
        help="learning rate",
    )
