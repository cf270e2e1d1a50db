"""Planning: a validated spec becomes the exact list of trials, before anything runs.

``plan_sweep`` expands the grid (workloads × optimizers × schedulers × regularizers × seeds,
minus ``exclude``), builds each cell's ``TrialConfig`` and checks it with the engine's
``prepare_trial``, the very function the runner starts with, so that an incompatible
combination (BatchNorm on the quadratic) is reported up front rather than as a failed trial
an hour into the sweep. ``prepare_trial`` runs once per cell: seeds cannot change whether a
configuration is valid.

Identities: ``trial_hash`` (the config with its seed, ``TrialConfig.config_hash``) is what
the store deduplicates on, so re-running a spec never stores a trial twice; ``cell_key`` (the
same without the seed) groups a cell's seeds; ``spec_hash`` identifies the sweep's results
(see ``spec.result_view``) so that an unchanged spec resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from bench_service.engine.config import Budget, Component, TrialConfig
from bench_service.engine.errors import ConfigError, IncompatibleError
from bench_service.engine.runner import prepare_trial
from bench_service.sweep.errors import SpecError
from bench_service.sweep.space import cell_search_space
from bench_service.sweep.spec import AXES, AXIS_KEYS, AxisEntry, SweepSpec, spec_hash


@dataclass(frozen=True)
class PlannedTrial:
    """One trial to run: its config, identities, axis names and resolved hyperparameters."""

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
            where its name occurs twice in its axis).
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
    def expected_trials(self) -> int:
        """Trials the sweep will run in all (tuning: per cell, the budget plus final runs)."""
        tuning = self.spec.tuning
        if tuning is None:
            return len(self.trials)
        return len(self.cells) * (tuning.trials_per_cell + len(self.spec.final_seeds))


def cell_key_of(config: TrialConfig) -> str:
    """SHA-256 of the canonical config without its seed: one key for all seeds of a cell."""
    data = config.to_dict()
    del data["seed"]
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    for axis, key in AXIS_KEYS.items():
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
    for a, axis in enumerate(AXES):
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
    for a, axis in enumerate(AXES):
        names = {axes[axis][m.index[a]].name for m in members}
        if len(names) == 1:
            rule[AXIS_KEYS[axis]] = names.pop()
    if not rule:
        return None
    matched = sum(
        all(axes[axis][index[a]].name == rule.get(AXIS_KEYS[axis], axes[axis][index[a]].name)
            for a, axis in enumerate(AXES))
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
            lines.append(f"  {_pattern(used, labels)}: {reason}")
        else:
            lines.extend(f"  {m.label}: {reason}" for m in members)
        rule = _exclude_rule(members, axes, planned)
        if rule is not None:
            rules.append(rule)
    hint = "set skip_incompatible: true to skip them"
    if rules:
        hint += f", or drop them with exclude: [{', '.join(dict.fromkeys(rules))}]"
    n = len(bad)
    message = (
        f"{n} incompatible cell{'s' * (n > 1)} (of {len(planned)}):\n"
        + "\n".join(lines) + f"\n{hint}"
    )
    errors = [(b.field, f"{b.label}: {b.reason}") for b in bad]
    return SpecError(bad[0].field, message, errors, summarised=True)


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Expand ``spec`` into its trials, checking every cell with ``prepare_trial``.

    Raises:
        SpecError: Incompatible cells (all listed) unless ``skip_incompatible`` is set, or any
            other configuration problem of a cell, with the spec path of the entry at fault.
    """
    axes = {axis: spec.axis(axis) for axis in AXES}
    labels = {axis: _labels(entries) for axis, entries in axes.items()}
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
    ranges = [range(len(axes[axis])) for axis in AXES]
    for index in itertools.product(*ranges):
        entries = [axes[axis][i] for axis, i in zip(AXES, index, strict=True)]
        names = {AXIS_KEYS[axis]: e.name for axis, e in zip(AXES, entries, strict=True)}
        if any(rule.matches(names) for rule in spec.exclude):
            continue
        planned.append(index)
        idx = dict(zip(AXES, index, strict=True))
        label = "/".join(labels[axis][i] for axis, i in idx.items())
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
                skipped.append(SkippedCell(label, **names, field=where, reason=exc.message))
            else:
                incompatible.append(
                    _Incompatible(index, label, where, exc.field.partition(".")[0], exc.message)
                )
            continue
        except ConfigError as exc:
            raise SpecError(_spec_field(exc.field, idx), f"{label}: {exc.message}") from exc
        params = prepared.resolved()
        key = cell_key_of(config)
        space = cell_search_space(spec, entries[1:]) if spec.tuning is not None else {}
        cells.append(PlannedCell(key, label, **names, config=config, params=params,
                                 search_space=space))
        if spec.tuning is not None:
            continue
        for seed in seeds:
            cfg = replace(config, seed=seed)
            trials.append(PlannedTrial(
                config=cfg, trial_hash=cfg.config_hash(), cell_key=key,
                workload=names["workload"], optimizer=names["optimizer"],
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
