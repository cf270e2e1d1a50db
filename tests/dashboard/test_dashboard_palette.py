"""One colour per algorithm everywhere, keyed on the engine's registries."""

from __future__ import annotations

import pytest

from dashboard.palette import REGISTRY_ORDER, color_map, color_of, dash_of


def test_mirror_equals_the_registries() -> None:
    """The dashboard mirrors the registry order (to avoid importing torch); keep it equal."""
    from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS

    assert REGISTRY_ORDER["optimizer"] == tuple(OPTIMIZERS.builtin_names())
    assert REGISTRY_ORDER["scheduler"] == tuple(SCHEDULERS.builtin_names())
    assert REGISTRY_ORDER["regularizer"] == tuple(REGULARIZERS.builtin_names())
    assert REGISTRY_ORDER["workload"] == tuple(WORKLOADS.builtin_names())


@pytest.mark.parametrize("axis", ["optimizer", "scheduler", "regularizer", "workload"])
def test_registered_names_get_distinct_stable_colours(axis: str) -> None:
    names = REGISTRY_ORDER[axis]
    colours = [color_of(axis, n) for n in names]
    assert len(set(colours)) == len(names)
    # Independent of which other names a sweep has.
    assert color_map(axis, names[::-1])[names[0]] == colours[0]


def test_unknown_names_get_a_stable_colour() -> None:
    assert color_of("optimizer", "my_plugin_opt") == color_of("optimizer", "my_plugin_opt")
    assert dash_of("scheduler", "constant") == "solid"
