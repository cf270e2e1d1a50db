"""How big a sweep is, counted from the spec alone, before anything is built.

A grid's size is a product (cells × seeds), so a short spec can describe ten million trials;
planning those one by one is what must not happen just to find out. ``count_cells`` counts
the cells left after ``exclude`` exactly, by arithmetic over the axes (each exclude rule
matches by name on the axes it gives), in time that depends on the number of rules and
distinct names, not on the number of cells. ``check_size`` refuses a sweep over the limit
with the count and the limit.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache

from bench_service.sweep.errors import SpecError, shown
from bench_service.sweep.spec import SweepSpec
from bench_service.vocab import AXIS_OF_SPEC, SPEC_AXES

#: Most trials a sweep may have unless the spec (``max_trials``) or the environment says.
DEFAULT_MAX_TRIALS = 100_000
#: Environment variable overriding ``DEFAULT_MAX_TRIALS`` (a spec's ``max_trials`` wins).
MAX_TRIALS_ENV = "BENCH_MAX_TRIALS"

Rule = tuple[tuple[str, str], ...]  # sorted (axis key, name) pairs still to match


def count_cells(spec: SweepSpec) -> int:
    """Cells of the grid (one entry per axis) that no ``exclude`` rule drops.

    Incompatible cells are counted: whether a cell can run is known only once the planner
    checks it, so this is what the planner will look at.
    """
    names = tuple(
        tuple(sorted(Counter(e.name for e in spec.axis(axis)).items()))
        for axis in SPEC_AXES
    )
    rules = frozenset(
        tuple(sorted(rule.given().items())) for rule in spec.exclude
    )
    return _count(names, rules)


def _count(names: tuple[tuple[tuple[str, int], ...], ...], rules: frozenset[Rule]) -> int:
    @cache
    def count(axis: int, active: frozenset[Rule]) -> int:
        if () in active:  # a rule with nothing left to match: every cell here is excluded
            return 0
        if axis == len(SPEC_AXES):
            return 1
        key = AXIS_OF_SPEC[SPEC_AXES[axis]]
        total = 0
        others = 0  # entries whose name no active rule constrains on this axis
        named = {dict(rule)[key] for rule in active if key in dict(rule)}
        for name, n in names[axis]:
            if name not in named:
                others += n
                continue
            rest = frozenset(
                tuple(p for p in rule if p[0] != key)
                for rule in active if dict(rule).get(key, name) == name
            )
            total += n * count(axis + 1, rest)
        if others:
            rest = frozenset(rule for rule in active if key not in dict(rule))
            total += others * count(axis + 1, rest)
        return total

    return count(0, rules)


def count_trials(spec: SweepSpec, cells: int | None = None) -> int:
    """Trials the sweep runs: cells × seeds, or for a tuned sweep cells × (budget + finals)."""
    n = count_cells(spec) if cells is None else cells
    if spec.tuning is None:
        return n * len(spec.seeds)
    return n * (spec.tuning.trials_per_cell + len(spec.final_seeds))


def max_trials(spec: SweepSpec, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The trial limit of ``spec`` and where it comes from (for the message)."""
    if spec.max_trials is not None:
        return spec.max_trials, "max_trials"
    env = os.environ if environ is None else environ
    raw = env.get(MAX_TRIALS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise SpecError(
                "max_trials", f"${MAX_TRIALS_ENV} must be a positive integer, got {shown(raw)}"
            )
        return value, f"${MAX_TRIALS_ENV}"
    return DEFAULT_MAX_TRIALS, "the default"


def check_size(spec: SweepSpec, environ: Mapping[str, str] | None = None) -> int:
    """The sweep's trial count, or ``SpecError`` if it is over the limit (``max_trials``)."""
    cells = count_cells(spec)
    trials = count_trials(spec, cells)
    limit, source = max_trials(spec, environ)
    if trials > limit:
        raise SpecError("max_trials", (
            f"the sweep has {trials:,} trials ({_breakdown(spec, cells)}), over the limit of "
            f"{limit:,} ({source}); shrink the grid, or raise the limit with max_trials: N in "
            f"the spec or ${MAX_TRIALS_ENV}"
        ))
    return trials


def _breakdown(spec: SweepSpec, cells: int) -> str:
    axes: Sequence[int] = [len(spec.axis(a)) for a in SPEC_AXES]
    grid = " × ".join(str(n) for n in axes)
    where = f"{cells:,} cells of {grid}" if cells != math.prod(axes) else f"{grid} cells"
    if spec.tuning is None:
        return f"{where} × {len(spec.seeds)} seeds"
    t = spec.tuning
    return f"{where} × ({t.trials_per_cell} tuning + {len(spec.final_seeds)} final)"


__all__ = [
    "DEFAULT_MAX_TRIALS", "MAX_TRIALS_ENV", "check_size", "count_cells", "count_trials",
    "max_trials",
]
