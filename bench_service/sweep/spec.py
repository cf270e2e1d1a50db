"""The sweep spec: what a user writes in YAML, validated before anything runs.

Validation has two stages. The pydantic models here check the *shape* (types, required
fields, bounds that need no registry); ``bench_service.sweep.checks`` then checks the
*meaning* against the engine's registries (names exist, hyperparameters are valid, search
ranges fit the declared bounds) and returns the spec in canonical form: registry names,
coerced parameter values, ``final_seeds`` filled in. ``load_spec``/``parse_spec`` run both, so
a ``SweepSpec`` obtained from them is always valid and canonical. They live in
``bench_service.sweep.loading`` (this module imports no registry, hence no torch).

Numbers are bounded by what stores them: seeds, budgets and counts are SQL ``INTEGER``
columns (32-bit on PostgreSQL), so they must fit ``[0, 2^31 - 1]``; resources are bounded by
what a cluster can honour. Every error is a ``SpecError`` whose ``field`` is a dotted path
into the YAML, and echoes at most a short slice of the value (``errors.shown``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench_service.engine.registry import closest
from bench_service.sweep.errors import clip, convert_validation_error, shown
from bench_service.vocab import SPEC_AXES, metric_mode

SAMPLERS = ("tpe", "random", "qmc", "grid", "cmaes")
PRUNERS = ("none", "median", "hyperband", "successive_halving")

#: Top-level fields that cannot change any result, left out of ``spec_hash``: renaming or
#: re-describing a sweep, giving it more CPUs or a higher trial limit must still resume it.
NON_RESULT_FIELDS = ("name", "description", "resources", "skip_incompatible", "max_trials",
                     "execution")

#: Largest value of a 32-bit SQL ``INTEGER`` (PostgreSQL's; seeds, steps, epochs, counts).
INT32_MAX = 2**31 - 1
#: Longest registry name or metric name a spec may write (the columns are ``String(100)``
#: and ``String(64)``).
MAX_NAME_CHARS = 100
#: Most hyperparameters of one entry.
MAX_PARAMS = 100
#: Largest ``log_every``: the runner keeps a buffer of that many losses.
MAX_LOG_EVERY = 1_000_000
#: Most trials one sweep may run at once under tuning.
MAX_CONCURRENT = 10_000
#: Most retries of a trial lost with its worker.
MAX_RETRIES = 100
#: Bounds of a trial's CPU share (Ray's resolution is 1e-4 of a CPU) and GPU share.
MIN_CPUS, MAX_CPUS, MAX_GPUS = 0.01, 4096.0, 1024.0

# ``fullmatch``, never ``match`` with ``$``: ``$`` also matches before a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DEVICE = re.compile(r"cpu|cuda|cuda:\d{1,4}")
_METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

Seed = Annotated[int, Field(ge=0, le=INT32_MAX)]


def _one_of(value: str, valid: tuple[str, ...]) -> str:
    """``value`` if in ``valid``, else a ValueError with the closest names."""
    if value not in valid:
        hint = closest(clip(value, 100), valid)
        raise ValueError(f"must be one of {', '.join(valid)}; got {shown(value)}{hint}")
    return value


def _distinct(values: list[int], what: str) -> list[int]:
    seen: set[int] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {shown(v)}; {what}s must be distinct")
        seen.add(v)
    return values


class _Model(BaseModel):
    """Strict (no ``"1"`` for 1, no ``true`` for 1), closed (unknown keys are errors), frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AxisEntry(_Model):
    """One entry of an axis: a registered name and the hyperparameters fixed for it.

    In YAML either ``adam`` or ``{name: adam, params: {lr: 0.01}}``; parameters not given take
    the registry's defaults (and, under ``tuning``, are searched).
    """

    name: str = Field(max_length=MAX_NAME_CHARS)
    params: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PARAMS)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, Mapping):
            if value.get("params", {}) is None:  # ``params:`` with nothing after it
                return {**value, "params": {}}
            return value
        if isinstance(value, AxisEntry):
            return value
        raise ValueError(f"must be a name or {{name, params}}, got {shown(value)}")

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty name")
        return value.strip()

    @field_validator("params")
    @classmethod
    def _short_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key or len(key) > MAX_NAME_CHARS:
                raise ValueError(
                    f"hyperparameter names have 1 to {MAX_NAME_CHARS} characters, got "
                    f"{shown(key)}"
                )
        return value

    def label(self, with_params: bool = True) -> str:
        """``adam`` or ``yogi(lr=0.01)``: how diffs and labels show this entry."""
        if not with_params or not self.params:
            return self.name
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(sorted(self.params.items()))}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def compact_number(value: Any) -> str:
    """Shortest text that reads back as ``value``: ``10`` for 10.0, ``0.001``, ``1e-05``.

    Unlike ``{:g}`` it never rounds, so two different values never print alike.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact_number(v) for v in value) + "]"
    return str(value)


class BudgetSpec(_Model):
    """How long each trial trains: ``{epochs: N}`` or ``{steps: N}``, not both."""

    epochs: int | None = Field(default=None, ge=1, le=INT32_MAX)
    steps: int | None = Field(default=None, ge=1, le=INT32_MAX)

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if not isinstance(value, (Mapping, BudgetSpec)):
            raise ValueError(f"must be {{epochs: N}} or {{steps: N}}, got {shown(value)}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetSpec:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both")
        if self.epochs is None and self.steps is None:
            raise ValueError("give epochs or steps, e.g. {epochs: 10}")
        return self

    def to_dict(self) -> dict[str, int]:
        return {"epochs": self.epochs} if self.epochs is not None else {"steps": self.steps or 0}


class Resources(_Model):
    """What Ray reserves for each trial and how often it retries a trial lost with its worker."""

    cpus_per_trial: float = Field(default=1.0, ge=MIN_CPUS, le=MAX_CPUS, allow_inf_nan=False)
    gpus_per_trial: float = Field(default=0.0, ge=0, le=MAX_GPUS, allow_inf_nan=False)
    max_retries: int = Field(default=3, ge=0, le=MAX_RETRIES)

    @field_validator("gpus_per_trial")
    @classmethod
    def _ray_gpu_fraction(cls, value: float) -> float:
        # Ray accepts fractions of one GPU, but more than one must be a whole number.
        if value > 1 and not float(value).is_integer():
            raise ValueError(f"above 1 must be a whole number of GPUs, got {value:g}")
        return value


#: Most members of one pack (``execution.pack``).
MAX_PACK = 4096


class Execution(_Model):
    """How trials run: one at a time (default), or packed, K trials as one program per task.

    ``pack: K`` trains packable trials that share a workload, batch size, architecture and
    optimizer in packs of up to K (``engine.packed``; also on CPU, for testing); ``auto``
    sizes K from the GPU's free memory and keeps CPU sweeps unpacked (packing loses on a few
    CPU cores). Results are the same either way, so it is not part of the spec hash.
    """

    pack: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_PACK)] | None = None


class ExcludeRule(_Model):
    """A partial cell: every trial matching all the given axis names is dropped."""

    workload: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    optimizer: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    scheduler: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    regularizer: str | None = Field(default=None, max_length=MAX_NAME_CHARS)

    @model_validator(mode="after")
    def _not_empty(self) -> ExcludeRule:
        if not self.given():
            raise ValueError("give at least one of workload, optimizer, scheduler, regularizer")
        return self

    def given(self) -> dict[str, str]:
        """The axis keys this rule constrains (``{"workload": "quadratic", ...}``)."""
        return {
            k: v
            for k, v in (
                ("workload", self.workload),
                ("optimizer", self.optimizer),
                ("scheduler", self.scheduler),
                ("regularizer", self.regularizer),
            )
            if v is not None
        }

    def matches(self, names: Mapping[str, str]) -> bool:
        """Whether a cell with axis names ``names`` (``{"workload": ..., ...}``) is excluded."""
        return all(names.get(k) == v for k, v in self.given().items())


class ParamRange(_Model):
    """Where tuning searches one hyperparameter: ``{low, high, log}`` or ``{choices}``.

    Consistency (low < high, inside the parameter's valid bounds, choices for categorical
    parameters) needs the registry and is checked in ``checks``.
    """

    low: float | None = Field(default=None, allow_inf_nan=False)
    high: float | None = Field(default=None, allow_inf_nan=False)
    log: bool = False
    choices: list[Any] | None = Field(default=None, max_length=1000)

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


class Objective(_Model):
    """What tuning optimises: ``val_loss`` (default), ``train_loss``, ``time_to_target`` or
    any metric every workload of the spec reports (checked in ``checks``: ``val_accuracy``,
    char_lm's ``val_perplexity``, a plug-in's own). ``mode`` defaults to the metric's
    direction (``bench_service.vocab.metric_mode``)."""

    metric: str = "val_loss"
    mode: str = "min"

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "mode" not in value:
            metric = value.get("metric", "val_loss")
            return {**value, "mode": metric_mode(metric) if isinstance(metric, str) else "min"}
        return value

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _METRIC.fullmatch(value):
            raise ValueError(
                "must be a metric name (letters, digits and '_', at most 64), e.g. val_loss; "
                f"got {shown(value)}"
            )
        return value

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        return _one_of(value, ("min", "max"))

    @model_validator(mode="after")
    def _time_is_minimised(self) -> Objective:
        if self.metric == "time_to_target" and self.mode != "min":
            raise ValueError("time_to_target can only be minimised (mode: min)")
        return self


class TuningSpec(_Model):
    """Equal-budget tuning (issue #4): ``trials_per_cell`` trials per grid cell, then the
    best config of each cell re-run on ``final_seeds``.

    ``search_space`` maps an algorithm name of this spec to parameter ranges that override
    the registry's default ranges; parameters fixed in an axis entry stay fixed.
    ``final_seeds`` defaults to the spec's ``seeds``.
    """

    trials_per_cell: int = Field(ge=1, le=INT32_MAX)
    sampler: str = "tpe"
    pruner: str = "none"
    objective: Objective = Field(default_factory=Objective)
    tune_seed: int = Field(default=0, ge=0, le=INT32_MAX)
    final_seeds: list[Seed] | None = Field(default=None, min_length=1)
    search_space: dict[str, dict[str, ParamRange]] = Field(default_factory=dict)
    max_concurrent: int | None = Field(default=None, ge=1, le=MAX_CONCURRENT)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return _one_of(value, SAMPLERS)

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, value: str) -> str:
        return _one_of(value, PRUNERS)

    @field_validator("final_seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else _distinct(value, "seed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials_per_cell": self.trials_per_cell,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "objective": {"metric": self.objective.metric, "mode": self.objective.mode},
            "tune_seed": self.tune_seed,
            "final_seeds": list(self.final_seeds) if self.final_seeds is not None else None,
            "search_space": {
                algo: {p: r.to_dict() for p, r in sorted(params.items())}
                for algo, params in sorted(self.search_space.items())
            },
            "max_concurrent": self.max_concurrent,
        }


def _default_entry(name: str) -> list[AxisEntry]:
    return [AxisEntry(name=name)]


class SweepSpec(_Model):
    """A whole sweep: the grid axes, seeds, training settings, resources and tuning.

    Obtain one from ``load_spec``/``parse_spec`` (validated and canonical); constructing it
    directly checks only the shape.
    """

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    workloads: list[AxisEntry] = Field(min_length=1)
    optimizers: list[AxisEntry] = Field(min_length=1)
    schedulers: list[AxisEntry] = Field(
        default_factory=lambda: _default_entry("constant"), min_length=1
    )
    regularizers: list[AxisEntry] = Field(
        default_factory=lambda: _default_entry("none"), min_length=1
    )
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    budget: BudgetSpec | None = None
    batch_size: int | None = Field(default=None, ge=1, le=INT32_MAX)
    log_every: int = Field(default=10, ge=1, le=MAX_LOG_EVERY)
    device: str = "cpu"
    resources: Resources = Field(default_factory=lambda: Resources())
    execution: Execution = Field(default_factory=lambda: Execution())
    skip_incompatible: bool = False
    exclude: list[ExcludeRule] = Field(default_factory=list)
    tuning: TuningSpec | None = None
    #: Refuse the sweep if it has more trials than this (``None``: ``$BENCH_MAX_TRIALS``, else
    #: ``size.DEFAULT_MAX_TRIALS``); a guard against a typo planning millions of trials.
    max_trials: int | None = Field(default=None, ge=1, le=INT32_MAX)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"may only contain letters, digits, '_', '.' and '-', got {shown(value)}"
            )
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int]) -> list[int]:
        return _distinct(value, "seed")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"must be 'cpu', 'cuda' or 'cuda:N', got {shown(value)}")
        return value

    def renamed(self, name: str) -> SweepSpec:
        """This spec under another sweep name (``bench run --name``), the name validated."""
        try:
            self.model_validate({**self.model_dump(), "name": name})
        except ValidationError as exc:
            raise convert_validation_error(exc, fields_at) from None
        return self.model_copy(update={"name": name})

    def axis(self, axis: str) -> list[AxisEntry]:
        """The entries of one axis by its plural name (``"optimizers"``)."""
        entries: list[AxisEntry] = getattr(self, axis)
        return entries

    @property
    def final_seeds(self) -> list[int]:
        """Seeds of the final runs of a tuned sweep (the grid's seeds without tuning)."""
        if self.tuning is not None and self.tuning.final_seeds is not None:
            return list(self.tuning.final_seeds)
        return list(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec as plain JSON-able data (what the database stores).

        Every field is present (``None`` where unset) so that two specs compare key by key.
        """
        return {
            "name": self.name,
            "description": self.description,
            **{axis: [e.to_dict() for e in self.axis(axis)] for axis in SPEC_AXES},
            "seeds": list(self.seeds),
            "budget": self.budget.to_dict() if self.budget is not None else None,
            "batch_size": self.batch_size,
            "log_every": self.log_every,
            "device": self.device,
            "resources": self.resources.model_dump(),
            "execution": self.execution.model_dump(),
            "skip_incompatible": self.skip_incompatible,
            "exclude": [r.given() for r in self.exclude],
            "tuning": self.tuning.to_dict() if self.tuning is not None else None,
            "max_trials": self.max_trials,
        }


# --- identity ---------------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def result_view(spec_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a normalised spec that can change results, order-free where order is moot.

    Drops ``NON_RESULT_FIELDS`` and ``tuning.max_concurrent`` (how many trials run at once),
    and sorts the axes, seeds and exclude rules: reordering them runs the very same trials.
    """
    view = {k: v for k, v in spec_dict.items() if k not in NON_RESULT_FIELDS}
    for axis in SPEC_AXES:
        view[axis] = sorted(view.get(axis) or [], key=_canonical_json)
    view["seeds"] = sorted(view.get("seeds") or [])
    view["exclude"] = sorted(view.get("exclude") or [], key=_canonical_json)
    tuning = view.get("tuning")
    if isinstance(tuning, Mapping):
        tuning = {k: v for k, v in tuning.items() if k != "max_concurrent"}
        tuning["final_seeds"] = sorted(tuning.get("final_seeds") or [])
        view["tuning"] = tuning
    return view


def spec_hash(spec: SweepSpec | Mapping[str, Any]) -> str:
    """SHA-256 of the canonical result-relevant spec: equal hashes resume the same sweep."""
    data = spec.to_dict() if isinstance(spec, SweepSpec) else spec
    return hashlib.sha256(_canonical_json(result_view(data)).encode()).hexdigest()


# --- error paths ------------------------------------------------------------------------------


def fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model at pydantic ``loc`` (for "unknown field" hints)."""
    model: Any = SweepSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue  # list index: same element model
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            # a free-form key (search_space's algorithm/param name): the value's model stays
            continue
        model = _inner_model(field.annotation)
    return list(model.model_fields) if model is not None else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``list[M]``, ``M | None``, ``dict[str, dict[str, M]]``..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
