"""The meaning of a spec, checked against the engine's registries.

Runs after the pydantic shape check. Every axis entry is resolved exactly as the engine will
resolve it for a trial (same code: ``build_workload``, ``resolve_optimizer``, ...), so a spec
that passes here cannot fail on a name or a hyperparameter mid-sweep. The engine names fields
for one trial (``optimizer.params.lr``); errors are re-raised in spec terms
(``optimizers[3].params.lr``). All problems are collected, the first one reported.

Then the sweep's size is counted (``size.check_size``) and refused over its trial limit, so
that a spec accepted here can also be planned.

The spec comes back canonical: registry names (``Adam`` → ``adam``, aliases resolved), given
parameters coerced to their declared kind (``lr: 1`` → ``1.0``), search-space algorithm names
canonical and ``tuning.final_seeds`` filled in, so that equal experiments hash equally.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from bench_service.engine.config import Component
from bench_service.engine.errors import ConfigError
from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.optimizers import OPTIMIZERS, resolve_optimizer
from bench_service.engine.registry import closest
from bench_service.engine.regularizers import REGULARIZERS, resolve_regularizer
from bench_service.engine.schedulers import SCHEDULERS, resolve_scheduler
from bench_service.engine.workloads import WORKLOADS, ArchOptions, build_workload
from bench_service.sweep.errors import SpecError, clip, shown
from bench_service.sweep.size import check_size
from bench_service.sweep.spec import MAX_NAME_CHARS, AxisEntry, ParamRange, SweepSpec
from bench_service.vocab import AXIS_OF_SPEC, SPEC_AXES, TUNED_SPEC_AXES

Problems = list[tuple[str, str]]

#: Largest integer a hyperparameter may be written as (a 64-bit integer).
MAX_PARAM_INT = 2**63 - 1
#: Largest and smallest non-zero magnitude of a real-valued hyperparameter: training runs in
#: float32, where a larger value is inf and a smaller one 0 (registries may bound further).
MAX_PARAM_FLOAT, MIN_PARAM_FLOAT = 3.4028234663852886e38, 1.401298464324817e-45
#: Most items of a list-valued hyperparameter.
MAX_LIST_ITEMS = 100
#: Objectives every trial records whatever its workload: the runner's own, and ``val_loss``,
#: which the runner requires of every workload's ``evaluate`` (it is how divergence shows).
RUNNER_METRICS = ("train_loss", "time_to_target", "val_loss")


def param_space(axis: str, name: str) -> ParamSpace:
    """The declared hyperparameters of a registered algorithm (schedulers: with ``interval``)."""
    if axis == "optimizers":
        return OPTIMIZERS.get(name).hyperparams
    if axis == "schedulers":
        return SCHEDULERS.get(name).space()
    if axis == "regularizers":
        return REGULARIZERS.get(name).hyperparams
    return WORKLOADS.get(name).hyperparams


def _value_problem(value: Any, path: str) -> tuple[str, str] | None:
    """A hyperparameter value the registries should not be handed: nested, huge, too long.

    What is left (a number, a bool, a short name, a short flat list of them) the registry
    validates against the parameter's declaration.
    """
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_ITEMS:
            return path, f"at most {MAX_LIST_ITEMS} items, got {len(value)}"
        for i, item in enumerate(value):
            if isinstance(item, (list, tuple)):
                return f"{path}[{i}]", f"must be a number, got {shown(item)}"
            problem = _value_problem(item, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) > MAX_PARAM_FLOAT:
            return path, f"is too large for float32 (at most 3.4e38 in magnitude), got {value!r}"
        if 0 < abs(value) < MIN_PARAM_FLOAT:
            return path, f"is too small for float32 (it would be 0), got {value!r}"
        return None  # non-finite: the registry says "must be finite"
    if isinstance(value, int):
        if abs(value) > MAX_PARAM_INT:
            return path, f"is too large (at most 2^63 - 1 in magnitude), got {shown(value)}"
        return None
    if isinstance(value, str):
        if len(value) > MAX_NAME_CHARS:
            return path, f"at most {MAX_NAME_CHARS} characters, got {shown(value)}"
        return None
    return path, f"must be a number, a name or a list of numbers, got {shown(value)}"


def canonical_entry(axis: str, entry: AxisEntry, where: str) -> AxisEntry:
    """Resolve ``entry`` as the engine will; return it with its registry name and coerced
    params, or raise ``SpecError`` with a field under ``where`` (e.g. ``optimizers[1]``)."""
    for key, value in entry.params.items():
        problem = _value_problem(value, f"{where}.params.{clip(key)}")
        if problem is not None:
            raise SpecError(*problem)
    try:
        resolved: dict[str, Any]
        if axis == "workloads":
            workload = build_workload(entry.name, dict(entry.params), where=where)
            name, resolved = type(workload).name, workload.params
        else:
            resolver: Callable[[Component, str], dict[str, Any]] = {
                "optimizers": resolve_optimizer,
                "schedulers": resolve_scheduler,
                "regularizers": resolve_regularizer,
            }[axis]
            resolved = resolver(Component(entry.name, dict(entry.params)), where)
            registry: Any = {
                "optimizers": OPTIMIZERS, "schedulers": SCHEDULERS, "regularizers": REGULARIZERS
            }[axis]
            name = registry.get(entry.name).name
    except ConfigError as exc:
        # Workload parameters are always reported as ``workload.params.x`` by the engine.
        raise SpecError.from_config_error(exc, AXIS_OF_SPEC[axis], where) from exc
    except (ArithmeticError, ValueError, TypeError) as exc:  # a number the engine cannot use
        raise SpecError(
            f"{where}.params", f"invalid value: {type(exc).__name__}: {clip(str(exc), 120)}"
        ) from exc
    params = {k: resolved[k] for k in sorted(entry.params)}
    return AxisEntry(name=name, params=params)


def _key(entry: AxisEntry) -> str:
    return json.dumps(entry.to_dict(), sort_keys=True, default=str)


def _check_axes(spec: SweepSpec, problems: Problems) -> dict[str, list[AxisEntry]]:
    axes: dict[str, list[AxisEntry]] = {}
    for axis in SPEC_AXES:
        entries: list[AxisEntry] = []
        first: dict[str, int] = {}
        for i, entry in enumerate(spec.axis(axis)):
            where = f"{axis}[{i}]"
            try:
                entry = canonical_entry(axis, entry, where)
            except SpecError as exc:
                problems.append((exc.field, exc.message))
                entries.append(entry)
                continue
            key = _key(entry)
            if key in first:
                problems.append((
                    where, f"duplicate of {axis}[{first[key]}] ({clip(entry.label(), 80)}); "
                    "each entry must differ in name or params",
                ))
            first.setdefault(key, i)
            entries.append(entry)
        axes[axis] = entries
    return axes


def _check_exclude(spec: SweepSpec, axes: dict[str, list[AxisEntry]], problems: Problems) -> Any:
    """Exclude rules must name entries of this spec (a typo would silently exclude nothing)."""
    rules = []
    for i, rule in enumerate(spec.exclude):
        update: dict[str, str] = {}
        for axis in SPEC_AXES:
            key = AXIS_OF_SPEC[axis]
            value = rule.given().get(key)
            if value is None:
                continue
            names = list(dict.fromkeys(e.name for e in axes[axis]))
            if value.lower() in names:
                update[key] = value.lower()
            else:
                problems.append((
                    f"exclude[{i}].{key}",
                    f"{shown(value)} is not among this spec's {axis}"
                    f"{closest(value.lower(), names)}; "
                    f"{axis}: {', '.join(names)}",
                ))
        rules.append(rule.model_copy(update=update))
    return rules


def _check_device(spec: SweepSpec, problems: Problems) -> None:
    if spec.device.startswith("cuda") and spec.resources.gpus_per_trial <= 0:
        problems.append((
            "resources.gpus_per_trial",
            f"device {spec.device!r} needs a GPU share per trial (e.g. 1 or 0.25), got 0",
        ))


def _range_problems(hp: HyperParam, rng: ParamRange, where: str) -> Problems:
    """Problems of one search range against its parameter's declaration."""
    out: Problems = []

    def valid(value: Any, path: str) -> None:
        problem = _value_problem(value, path)
        if problem is not None:
            out.append(problem)
            return
        try:
            hp.validate(value, "")
        except ConfigError as exc:
            out.append((path, exc.message))

    if rng.choices is not None:
        if rng.low is not None or rng.high is not None:
            out.append((where, "give low/high or choices, not both"))
        if not rng.choices:
            out.append((f"{where}.choices", "must not be empty"))
        for i, v in enumerate(rng.choices):
            valid(v, f"{where}.choices[{i}]")
        if len({json.dumps(v, sort_keys=True, default=str) for v in rng.choices}) < len(
            rng.choices
        ):
            out.append((f"{where}.choices", "must be distinct"))
        return out
    if hp.kind in ("bool", "choice", "list"):
        return [(where, f"{hp.name} is a {hp.kind} parameter: give choices: [...]")]
    for end in ("low", "high"):
        if getattr(rng, end) is None:
            out.append((f"{where}.{end}", "is required (or give choices: [...])"))
    if out:
        return out
    valid(rng.low, f"{where}.low")
    valid(rng.high, f"{where}.high")
    if out:
        return out
    low, high = float(rng.low or 0.0), float(rng.high or 0.0)
    if low >= high:
        return [(f"{where}.low", f"must be < high ({high:g}), got {low:g}")]
    if rng.log and low <= 0:
        out.append((f"{where}.low", f"must be > 0 with log: true, got {low:g}"))
    return out


def _check_search_space(
    spec: SweepSpec, axes: dict[str, list[AxisEntry]], problems: Problems
) -> dict[str, dict[str, ParamRange]]:
    """Search-space keys must be algorithms of this spec and declared parameters of them."""
    assert spec.tuning is not None
    owners: dict[str, str] = {}  # canonical algorithm name -> axis
    for axis in TUNED_SPEC_AXES:
        for entry in axes[axis]:
            owners.setdefault(entry.name, axis)
    out: dict[str, dict[str, ParamRange]] = {}
    for algo, params in spec.tuning.search_space.items():
        where = f"tuning.search_space.{clip(algo)}"
        canon = _canonical_algorithm(algo)
        owner = owners.get(canon or algo.lower())
        if owner is None:
            in_spec = sorted(owners)
            if canon is not None:
                msg = (f"{shown(algo)} is not among this spec's optimizers, schedulers or "
                       "regularizers")
            else:
                msg = f"unknown algorithm {shown(algo)}{closest(clip(algo.lower(), 100), in_spec)}"
            problems.append((where, f"{msg}; this spec has: {', '.join(in_spec)}"))
            continue
        assert canon is not None
        axis = owner
        space = param_space(axis, canon)
        ranges: dict[str, ParamRange] = {}
        for pname, rng in params.items():
            pwhere = f"{where}.{clip(pname)}"
            if pname not in space.names():
                valid = space.names()
                problems.append((
                    pwhere,
                    f"unknown hyperparameter of {canon}{closest(clip(pname, 100), valid)}; "
                    f"valid: {', '.join(valid) or 'none'}",
                ))
                continue
            problems.extend(_range_problems(space.get(pname), rng, pwhere))
            fixed_in = [
                f"{axis}[{i}]" for i, e in enumerate(axes[axis])
                if e.name == canon and pname in e.params
            ]
            same_name = [e for e in axes[axis] if e.name == canon]
            if fixed_in and len(fixed_in) == len(same_name):
                problems.append((
                    pwhere, f"{pname} is fixed in {', '.join(fixed_in)}.params, so it is never "
                    "tuned; remove it from one of the two",
                ))
            ranges[pname] = rng
        out[canon] = {**out.get(canon, {}), **ranges}
    return out


def _canonical_algorithm(name: str) -> str | None:
    if len(name) > MAX_NAME_CHARS:
        return None
    for registry in (OPTIMIZERS, SCHEDULERS, REGULARIZERS):
        if name in registry:
            canon: str = registry.get(name).name
            return canon
    return None


@lru_cache(maxsize=256)
def _reported(name: str, params_json: str) -> tuple[str, ...] | None:
    """Per-epoch metrics a workload reports: the runner's own plus what ``evaluate`` returns.

    Found by asking the workload itself (an untrained model evaluated on a few validation
    examples), so a plug-in's own metrics count too. ``None`` if that probe fails: the trial
    would fail the same way and say why.
    """
    try:
        workload = build_workload(name, json.loads(params_json))
        data = workload.data()
        model = workload.init_model(0, ArchOptions())
        model.eval()
        metrics = workload.evaluate(model, data.x_val[:4], data.y_val[:4])
    except Exception:  # a workload's own bug: reported by its first trial
        return None
    return (*RUNNER_METRICS, *metrics)


def reported_metrics(entry: AxisEntry) -> tuple[str, ...] | None:
    """What a (canonical) workload entry reports, e.g. ``(train_loss, ..., val_loss)``."""
    return _reported(entry.name, json.dumps(dict(entry.params), sort_keys=True, default=str))


def _check_objective(
    spec: SweepSpec, axes: dict[str, list[AxisEntry]], problems: Problems
) -> None:
    """Every workload must report the objective (a missing one makes every trial worst)."""
    assert spec.tuning is not None
    metric = spec.tuning.objective.metric
    if metric in RUNNER_METRICS:
        return
    reports: list[tuple[int, AxisEntry, tuple[str, ...]]] = []
    for i, entry in enumerate(axes["workloads"]):
        if entry.name not in WORKLOADS:
            continue  # already reported as an unknown workload
        reported = reported_metrics(entry)
        if reported is not None:
            reports.append((i, entry, reported))
    every = list(dict.fromkeys(m for _, _, reported in reports for m in reported))
    if reports and metric not in every:
        problems.append((
            "tuning.objective.metric",
            f"no workload of this spec reports {metric!r}{closest(metric, every)}; "
            f"they report: {', '.join(every)}",
        ))
        return
    for i, entry, reported in reports:
        if metric not in reported:
            problems.append((
                "tuning.objective.metric",
                f"workloads[{i}] ({entry.name}) does not report {metric!r}; "
                f"it reports: {', '.join(reported)}",
            ))
            return


def check_spec(spec: SweepSpec) -> SweepSpec:
    """Check ``spec`` against the registries; return its canonical form or raise SpecError."""
    problems: Problems = []
    axes = _check_axes(spec, problems)
    exclude = _check_exclude(spec, axes, problems)
    _check_device(spec, problems)
    update: dict[str, Any] = {**axes, "exclude": exclude}
    if spec.tuning is not None:
        space = _check_search_space(spec, axes, problems)
        _check_objective(spec, axes, problems)
        update["tuning"] = spec.tuning.model_copy(update={
            "search_space": space,
            "final_seeds": spec.final_seeds,
        })
    error = SpecError.collect(problems)
    if error is not None:
        raise error
    checked = spec.model_copy(update=update)
    check_size(checked)
    return checked


__all__ = ["canonical_entry", "check_spec", "param_space", "reported_metrics"]
