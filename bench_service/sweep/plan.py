"""Planning: a validated spec becomes the exact list of trials, before anything runs.

``plan_sweep`` expands the grid (workloads × optimizers × schedulers × regularizers × seeds,
minus ``exclude``), builds each cell's ``TrialConfig`` and checks it with the engine's
``prepare_trial``, the very function the runner starts with, so that an incompatible
combination (BatchNorm on the quadratic) is reported up front rather than as a failed trial
an hour into the sweep. ``prepare_trial`` runs once per cell: seeds cannot change whether a
configuration is valid.

Before anything is built, the sweep's size is counted arithmetically (``size.check_size``)
and a sweep over its trial limit is refused; each cell is then also checked against the
storage types (a trial's steps and epochs are 32-bit SQL integers) and its schedule is built
once over the cell's budget, so that a warm-up longer than the budget is refused here rather
than failing every trial.

Identities: ``trial_hash`` (the config with its seed, ``TrialConfig.config_hash``) is what
the store deduplicates on, so re-running a spec never stores a trial twice; ``cell_key`` (the
same without the seed) groups a cell's seeds; ``spec_hash`` identifies the sweep's results
(see ``spec.result_view``) so that an unchanged spec resumes.

Labels: a trial's ``workload`` column is the workload's *label*, ``quadratic`` or
``quadratic(condition=10)`` when it has non-default params, so that every table grouping by
workload keeps two problems apart (the config keeps the registry name). Labels are kept
short enough for the columns and Optuna study names they end up in (a hash suffix).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench_service.engine.config import Budget, Component, TrialConfig
from bench_service.engine.errors import ConfigError, IncompatibleError
from bench_service.engine.runner import PreparedTrial, prepare_trial
from bench_service.engine.schedulers import SCHEDULERS, SchedulePlan
from bench_service.sweep.checks import param_space
from bench_service.sweep.errors import SpecError, clip
from bench_service.sweep.size import check_size
from bench_service.sweep.space import cell_search_space
from bench_service.sweep.spec import INT32_MAX, AxisEntry, SweepSpec, compact_number, spec_hash
from bench_service.vocab import AXIS_OF_SPEC, SPEC_AXES

#: Longest cell label kept as it is; longer ones are cut with a hash suffix. A label ends up
#: in ``bench_cells.label`` (400 characters) and, after the sweep name (at most 100) and a
#: ``/``, in the Optuna study name (``bench_cells.study_name``: 500; Optuna's own: 512).
MAX_LABEL_CHARS = 300
#: Longest workload label (the trials' ``workload`` column is ``String(100)``).
MAX_WORKLOAD_LABEL_CHARS = 100
#: Most incompatible cells listed one by one in an error (the rest are counted).
MAX_LISTED_CELLS = 20


@dataclass(frozen=True, slots=True)
class PlannedTrial:
    """One trial to run: its config, identities, axis names and resolved hyperparameters.

    ``workload`` is the workload's label (``quadratic(condition=10)``), the other axes their
    registry names; ``config`` holds the registry names the engine resolves.
    """

    config: TrialConfig
    trial_hash: str
    cell_key: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    seed: int
    params: dict[str, Any]
    label: str


@dataclass(frozen=True)
class PlannedCell:
    """One grid cell (every axis fixed, any seed).

    Attributes:
        cell_key: SHA-256 of the cell's canonical config without the seed.
        label: ``mlp_digits/adam/cosine/l2`` (an entry shows its params, ``adam(lr=0.01)``,
            where its name occurs twice in its axis), at most ``MAX_LABEL_CHARS`` long.
        workload: The workload's label (see ``workload_label``); the other axes are names.
        config: The cell's config at its first seed (``tune_seed`` for a tuned sweep): the
            template the tuner fills with sampled hyperparameters.
        params: Effective hyperparameters (``PreparedTrial.resolved()``).
        search_space: Tuned sweeps only: ``"optimizer.lr" -> {kind, low, high, log}`` or
            ``{kind, choices}`` for every parameter tuning searches in this cell.
    """

    cell_key: str
    label: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    config: TrialConfig
    params: dict[str, Any]
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def steps_per_trial(self) -> int:
        """Optimizer steps one trial of this cell runs to its budget (the engine's count)."""
        return int(self.params.get("total_steps", 0))

    @property
    def epochs_per_trial(self) -> int:
        """Epochs one trial of this cell runs to its budget."""
        return int(self.params.get("epochs", 0))


@dataclass(frozen=True)
class SkippedCell:
    """An incompatible cell dropped under ``skip_incompatible: true``, and why."""

    label: str
    workload: str
    optimizer: str
    scheduler: str
    regularizer: str
    field: str
    reason: str


@dataclass(frozen=True)
class SweepPlan:
    """Everything a driver needs to register and run a sweep.

    ``trials`` is the full grid of a plain sweep; a tuned sweep (``spec.tuning``) has no trials
    known in advance (the tuner creates them per cell), so it is empty there and ``cells``
    carry the templates and search spaces.
    """

    name: str
    spec: SweepSpec
    trials: list[PlannedTrial]
    cells: list[PlannedCell]
    skipped: list[SkippedCell]
    spec_hash: str
    spec_dict: dict[str, Any]

    @property
    def tuned(self) -> bool:
        return self.spec.tuning is not None

    @property
    def trials_per_cell(self) -> int:
        """Trials of each cell: its seeds, or tuning's budget plus the final runs."""
        tuning = self.spec.tuning
        if tuning is None:
            return len(self.spec.seeds)
        return tuning.trials_per_cell + len(self.spec.final_seeds)

    @property
    def expected_trials(self) -> int:
        """Trials the sweep will run in all (tuning: per cell, the budget plus final runs)."""
        if self.spec.tuning is None:
            return len(self.trials)
        return len(self.cells) * self.trials_per_cell

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole sweep, every trial run to its budget.

        For a tuned sweep an upper bound: pruned (and diverged) trials stop early.
        """
        return sum(c.steps_per_trial for c in self.cells) * self.trials_per_cell

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole sweep, every trial run to its budget (tuned: an upper bound)."""
        return sum(c.epochs_per_trial for c in self.cells) * self.trials_per_cell


def cell_key_of(config: TrialConfig) -> str:
    """SHA-256 of the canonical config without its seed: one key for all seeds of a cell."""
    data = config.to_dict()
    del data["seed"]
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def short_label(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its start, ``~`` and 10 hex digits of
    its SHA-256: still readable, still distinct, and the same for the same text."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[: limit - 11]}~{digest}"


def workload_label(entry: AxisEntry) -> str:
    """``quadratic``, or ``quadratic(condition=10)`` when params differ from the defaults.

    Params are sorted and numbers written in their shortest exact form, so equal problems get
    equal labels in every sweep, and a label longer than ``MAX_WORKLOAD_LABEL_CHARS`` keeps a
    hash suffix.
    """
    try:
        defaults = {hp.name: hp.default for hp in param_space("workloads", entry.name)}
    except ConfigError:
        defaults = {}
    changed = [
        (k, v) for k, v in sorted(entry.params.items()) if k not in defaults or v != defaults[k]
    ]
    if not changed:
        return entry.name
    inner = ",".join(f"{k}={compact_number(v)}" for k, v in changed)
    return short_label(f"{entry.name}({inner})", MAX_WORKLOAD_LABEL_CHARS)


def _labels(entries: list[AxisEntry]) -> list[str]:
    """Entry labels of one axis: the bare name unless the name occurs more than once."""
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        counts[e.name] += 1
    return [e.label(with_params=counts[e.name] > 1) for e in entries]


def _component(entry: AxisEntry) -> Component:
    return Component(entry.name, dict(entry.params))


def _spec_field(engine_field: str, idx: dict[str, int]) -> str:
    """``regularizer.params.x`` (engine, one trial) → ``regularizers[2].params.x`` (spec)."""
    head, sep, rest = engine_field.partition(".")
    for axis, key in AXIS_OF_SPEC.items():
        if head == key:
            return f"{axis}[{idx[axis]}]{sep}{rest}"
    return engine_field


@dataclass
class _Incompatible:
    index: tuple[int, ...]
    label: str
    field: str
    axis_field: str
    reason: str


def _pattern(used: list[list[int]], labels: dict[str, list[str]]) -> str:
    """``quadratic/*/{adam,yogi}/batchnorm``: ``*`` for a whole axis, braces for a subset."""
    parts = []
    for a, axis in enumerate(SPEC_AXES):
        names = [labels[axis][i] for i in used[a]]
        if len(names) == 1:
            parts.append(names[0])
        elif len(names) == len(labels[axis]):
            parts.append("*")
        else:
            parts.append("{" + ",".join(names) + "}")
    return "/".join(parts)


def _exclude_rule(
    members: list[_Incompatible], axes: dict[str, list[AxisEntry]], planned: list[tuple[int, ...]]
) -> str | None:
    """An ``exclude`` rule that drops exactly ``members`` among the planned cells, if any.

    Built from the axes on which the members agree by name; offered only if it matches no
    compatible cell (a hint must never silently drop good cells).
    """
    rule: dict[str, str] = {}
    for a, axis in enumerate(SPEC_AXES):
        names = {axes[axis][m.index[a]].name for m in members}
        if len(names) == 1:
            rule[AXIS_OF_SPEC[axis]] = names.pop()
    if not rule:
        return None
    matched = sum(
        all(axes[axis][index[a]].name
            == rule.get(AXIS_OF_SPEC[axis], axes[axis][index[a]].name)
            for a, axis in enumerate(SPEC_AXES))
        for index in planned
    )
    if matched != len(members):
        return None
    return "{" + ", ".join(f"{k}: {v}" for k, v in rule.items()) + "}"


def _describe_incompatible(
    bad: list[_Incompatible],
    axes: dict[str, list[AxisEntry]],
    labels: dict[str, list[str]],
    planned: list[tuple[int, ...]],
) -> SpecError:
    """One error listing every incompatible cell, compressed: ``quadratic/*/*/batchnorm``."""
    groups: dict[tuple[str, str], list[_Incompatible]] = defaultdict(list)
    for b in bad:
        groups[(b.axis_field, b.reason)].append(b)
    lines: list[str] = []
    rules: list[str] = []
    for reason_key, members in groups.items():
        reason = reason_key[1]
        used = [sorted({m.index[a] for m in members}) for a in range(4)]
        if math.prod(len(u) for u in used) == len(members):  # a sub-grid: one pattern
            lines.append(f"  {clip(_pattern(used, labels), 200)}: {reason}")
        else:
            lines.extend(f"  {m.label}: {reason}" for m in members)
        rule = _exclude_rule(members, axes, planned)
        if rule is not None:
            rules.append(rule)
    hint = "set skip_incompatible: true to skip them"
    if rules:
        hint += f", or drop them with exclude: [{', '.join(dict.fromkeys(rules))}]"
    n = len(bad)
    if len(lines) > MAX_LISTED_CELLS:
        lines = [*lines[:MAX_LISTED_CELLS], f"  ... and {len(lines) - MAX_LISTED_CELLS} more"]
    message = (
        f"{n} incompatible cell{'s' * (n > 1)} (of {len(planned)}):\n"
        + "\n".join(lines) + f"\n{hint}"
    )
    errors = [(b.field, f"{b.label}: {b.reason}") for b in bad]
    return SpecError(bad[0].field, message, errors, summarised=True)


def _with_seed(config: TrialConfig, seed: int) -> TrialConfig:
    """``replace(config, seed=seed)`` without re-running ``__init__``: the trials of a cell
    share everything but the seed, and planning 10^5 trials would spend its time there."""
    state = getattr(config, "__dict__", None)
    if state is None:
        return replace(config, seed=seed)
    out = object.__new__(TrialConfig)
    out.__dict__.update(state, seed=seed)
    return out


_SEED_MARK = "\x00seed\x00"


def _seed_hashes(config: TrialConfig, seeds: Sequence[int]) -> list[str]:
    """``config_hash()`` of ``config`` at each seed, serialising the config once per cell.

    The canonical JSON is cut where the seed goes and each hash is taken over the two halves
    around the seed's digits; the first one is checked against ``config_hash()`` itself, and
    any doubt (the cut is ambiguous, the check fails) falls back to hashing each config.
    """
    data = config.to_dict()
    data["seed"] = _SEED_MARK
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    head, found, tail = blob.partition(json.dumps(_SEED_MARK))
    if found and json.dumps(_SEED_MARK) not in tail and seeds:
        hashes = [hashlib.sha256(f"{head}{s}{tail}".encode()).hexdigest() for s in seeds]
        if hashes[0] == _with_seed(config, seeds[0]).config_hash():
            return hashes
    return [_with_seed(config, s).config_hash() for s in seeds]


def _budget_problem(spec: SweepSpec, prepared: PreparedTrial) -> tuple[str, str] | None:
    """A trial longer than a 32-bit step counter (the ``steps``/``epochs`` columns) holds."""
    steps, epochs = prepared.total_steps, prepared.epochs
    if steps <= INT32_MAX and epochs <= INT32_MAX:
        return None
    budget = spec.budget
    where = ("budget" if budget is None else "budget.steps" if budget.steps is not None
             else "budget.epochs")
    return where, (
        f"{epochs:,} epochs of {prepared.steps_per_epoch:,} steps is {steps:,} steps per "
        f"trial; a trial may run at most {INT32_MAX:,} steps"
    )


def _evaluate_schedule(name: str, hp: Mapping[str, Any], plan: SchedulePlan) -> None:
    """Evaluate the schedule's closed form (the very function its factory runs) at the first
    and last step of the budget; raises what starting a trial would raise.

    The closed form, not the factory: building a torch optimizer to drive the factory
    imports ``torch._dynamo`` (seconds) and planning must stay fast.
    """
    entry = SCHEDULERS.get(name)
    if entry.formula is None:
        return
    for t in (0, max(0, plan.span(hp["interval"]) - 1)):
        entry.formula(t, 1.0, hp, plan, hp["interval"])


def _schedule_problem(
    prepared: PreparedTrial, search_space: Mapping[str, Mapping[str, Any]]
) -> tuple[str, str] | None:
    """Why the cell's schedule cannot run over its budget, as ``(engine field, message)``.

    Checks the schedule as configured (its warm-up, if it has one, shorter than the budget)
    and, for a tuned sweep, at both ends of every searched
    scheduler parameter (and each of its choices): a warm-up searched up to the whole budget
    fails trials just as a fixed one does.
    """
    cfg = prepared.config
    plan = SchedulePlan(prepared.epochs, prepared.steps_per_epoch)
    base = dict(prepared.scheduler_params)
    variants: list[tuple[dict[str, Any], str]] = [(base, "")]
    for key, rng in search_space.items():
        axis, _, pname = key.partition(".")
        if axis != "scheduler":
            continue
        values = rng.get("choices") or [rng.get("low"), rng.get("high")]
        variants += [({**base, pname: v}, f" ({pname} = {compact_number(v)} is in "
                      "tuning's search range)") for v in values if v is not None]
    for hp, why in variants:
        try:
            _evaluate_schedule(cfg.scheduler.name, hp, plan)
        except ConfigError as exc:
            return exc.field or "scheduler.params", exc.message + why
        except Exception as exc:  # a plug-in's closed form that fails over this budget
            problem = f"{type(exc).__name__}: {clip(str(exc), 120)}"
            return "scheduler.params", f"the schedule cannot run: {problem}{why}"
        if hp.get("warmup") is not None:
            interval = hp["interval"]
            warmup, span = plan.duration(float(hp["warmup"]), interval), plan.span(interval)
            if warmup >= span:
                unit = "epochs" if interval == "epoch" else "steps"
                return "scheduler.params.warmup", (
                    f"the warm-up ({warmup} {unit}) must be shorter than the budget "
                    f"({span} {unit}){why}"
                )
    return None


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Pause the cyclic garbage collector while a plan is built.

    Building 10^5 trials allocates millions of objects that all stay alive; each collection
    would walk every one of them again, making planning quadratic in the number of trials.
    Nothing built here forms reference cycles, so nothing is left for the collector to do.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Expand ``spec`` into its trials, checking every cell with ``prepare_trial``.

    Raises:
        SpecError: A sweep over its trial limit (counted before anything is built),
            incompatible cells (all listed) unless ``skip_incompatible`` is set, a budget or
            schedule a cell cannot run, or any other configuration problem of a cell, with
            the spec path of the entry at fault.
    """
    check_size(spec)
    with _no_gc_pauses():
        return _plan(spec)


def _plan(spec: SweepSpec) -> SweepPlan:
    axes = {axis: spec.axis(axis) for axis in SPEC_AXES}
    labels = {axis: _labels(entries) for axis, entries in axes.items()}
    workloads = [workload_label(e) for e in axes["workloads"]]
    budget = Budget(
        epochs=spec.budget.epochs if spec.budget else None,
        steps=spec.budget.steps if spec.budget else None,
    )
    seeds = list(spec.seeds)
    template_seed = spec.tuning.tune_seed if spec.tuning is not None else seeds[0]

    trials: list[PlannedTrial] = []
    cells: list[PlannedCell] = []
    skipped: list[SkippedCell] = []
    incompatible: list[_Incompatible] = []
    planned: list[tuple[int, ...]] = []  # every cell not excluded, compatible or not
    schedules: dict[tuple[int, int, int], tuple[str, str] | None] = {}
    ranges = [range(len(axes[axis])) for axis in SPEC_AXES]
    for index in itertools.product(*ranges):
        entries = [axes[axis][i] for axis, i in zip(SPEC_AXES, index, strict=True)]
        names = {AXIS_OF_SPEC[axis]: e.name for axis, e in zip(SPEC_AXES, entries, strict=True)}
        if any(rule.matches(names) for rule in spec.exclude):
            continue
        planned.append(index)
        idx = dict(zip(SPEC_AXES, index, strict=True))
        label = short_label(
            "/".join(labels[axis][i] for axis, i in idx.items()), MAX_LABEL_CHARS
        )
        columns = {**names, "workload": workloads[index[0]]}
        config = TrialConfig(
            workload=_component(entries[0]),
            optimizer=_component(entries[1]),
            scheduler=_component(entries[2]),
            regularizer=_component(entries[3]),
            seed=template_seed,
            budget=budget,
            batch_size=spec.batch_size,
            device=spec.device,
            log_every=spec.log_every,
        )
        try:
            # CUDA is checked where the trial runs: the driver may have no GPU of its own.
            prepared = prepare_trial(replace(config, device="cpu"))
        except IncompatibleError as exc:
            where = _spec_field(exc.field, idx)
            if spec.skip_incompatible:
                skipped.append(SkippedCell(label, **columns, field=where, reason=exc.message))
            else:
                incompatible.append(
                    _Incompatible(index, label, where, exc.field.partition(".")[0], exc.message)
                )
            continue
        except ConfigError as exc:
            raise SpecError(_spec_field(exc.field, idx), f"{label}: {exc.message}") from exc
        space = cell_search_space(spec, entries[1:]) if spec.tuning is not None else {}
        problem = _budget_problem(spec, prepared)
        if problem is None:
            key_s = (index[2], prepared.epochs, prepared.steps_per_epoch)
            if key_s not in schedules:
                schedules[key_s] = _schedule_problem(prepared, space)
            problem = schedules[key_s]
            if problem is not None:
                problem = (_spec_field(problem[0], idx), problem[1])
        if problem is not None:
            raise SpecError(problem[0], f"{label}: {problem[1]}")
        params = prepared.resolved()
        key = cell_key_of(config)
        cells.append(PlannedCell(key, label, **columns, config=config, params=params,
                                 search_space=space))
        if spec.tuning is not None:
            continue
        for seed, trial_hash in zip(seeds, _seed_hashes(config, seeds), strict=True):
            trials.append(PlannedTrial(
                config=_with_seed(config, seed), trial_hash=trial_hash, cell_key=key,
                workload=columns["workload"], optimizer=names["optimizer"],
                scheduler=names["scheduler"], regularizer=names["regularizer"],
                seed=seed, params=params, label=label,
            ))
    if incompatible:
        raise _describe_incompatible(incompatible, axes, labels, planned)
    if not cells:
        raise SpecError("exclude", "every cell is excluded or skipped: nothing to run")
    spec_dict = spec.to_dict()
    return SweepPlan(
        name=spec.name, spec=spec, trials=trials, cells=cells, skipped=skipped,
        spec_hash=spec_hash(spec_dict), spec_dict=spec_dict,
    )
