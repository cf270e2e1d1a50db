"""One colour per algorithm everywhere, keyed on the engine's registries, and all distinct."""

from __future__ import annotations

import itertools
import math

import pytest

from bench_service.dashboard.palette import (
    DIVERGED_COLOR,
    PALETTE,
    REGISTRY_ORDER,
    color_map,
    color_of,
    dash_of,
)

#: Smallest CIELAB distance (ΔE*76) between two colours one chart may show side by side;
#: about 2.3 is a just-noticeable difference, yogi and momentum used to be 20 apart.
MIN_DELTA_E = 30.0


def lab(color: str) -> tuple[float, float, float]:
    """sRGB ``#RRGGBB`` → CIELAB (D65)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(color.lstrip("#")[i:i + 2], 16) / 255) for i in (0, 2, 4))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def delta_e(a: str, b: str) -> float:
    return math.dist(lab(a), lab(b))


def closest_pair(colors: dict[str, str]) -> tuple[float, str, str]:
    return min((delta_e(colors[a], colors[b]), a, b)
               for a, b in itertools.combinations(colors, 2))


def test_mirror_lists_only_built_in_names() -> None:
    """The dashboard mirrors the registry order (to avoid importing torch) only to keep each
    existing algorithm's colour stable; a new built-in entry need not be added to it (it takes
    a free slot, checked below), so adding one stays a single entry in a single file."""
    from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS

    registries = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                  "regularizer": REGULARIZERS, "workload": WORKLOADS}
    for axis, registry in registries.items():
        assert set(REGISTRY_ORDER[axis]) <= set(registry.builtin_names()), axis


@pytest.mark.parametrize("axis", ["optimizer", "scheduler", "regularizer", "workload"])
def test_every_built_in_entry_gets_a_distinguishable_colour_and_dash(axis: str) -> None:
    """Also the entries the mirror does not list yet: the mirror's names get colours ΔE >= 30
    apart (the test below); past them colours repeat (27 optimizers, 24 colours, some of them
    closer than 30), and every entry's (colour, dash) pair stays unique."""
    from bench_service.dashboard.palette import dash_map
    from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS

    registry = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                "regularizer": REGULARIZERS, "workload": WORKLOADS}[axis]
    names = registry.builtin_names()
    colors, dashes = color_map(axis, names), dash_map(axis, names)
    assert len({(colors[n], dashes[n]) for n in names}) == len(names)


@pytest.mark.parametrize("axis", ["optimizer", "scheduler", "regularizer", "workload"])
def test_built_in_names_get_distinguishable_stable_colours(axis: str) -> None:
    names = REGISTRY_ORDER[axis]
    colors = color_map(axis, names)
    distance, a, b = closest_pair(colors)
    assert distance >= MIN_DELTA_E, f"{a} and {b} are only ΔE {distance:.1f} apart"
    # Independent of which other names a sweep has.
    assert color_map(axis, names[::-1]) == colors
    assert color_of(axis, names[0]) == colors[names[0]]
    assert color_map(axis, names[:2])[names[1]] == colors[names[1]]


def test_yogi_and_momentum_are_told_apart() -> None:
    assert delta_e(color_of("optimizer", "yogi"), color_of("optimizer", "momentum")) \
        >= MIN_DELTA_E


@pytest.mark.parametrize("params", [
    ["optimizer.lr", "optimizer.beta2"],
    ["optimizer.beta1", "optimizer.beta2", "optimizer.eps", "optimizer.lr",
     "optimizer.momentum", "optimizer.weight_decay", "regularizer.weight_decay",
     "scheduler.gamma", "scheduler.warmup", "regularizer.p"],
])
def test_importance_params_get_distinguishable_colours(params: list[str]) -> None:
    colors = color_map("param", params)
    distance, a, b = closest_pair(colors)
    assert distance >= MIN_DELTA_E, f"{a} and {b} are only ΔE {distance:.1f} apart"


def test_names_outside_the_registry_never_share_a_colour() -> None:
    """Plug-ins and workload labels take the slots after the registry's, by sorted name."""
    extra = ["my_opt", "another_opt", "zeta"]
    colors = color_map("optimizer", [*REGISTRY_ORDER["optimizer"], *extra])
    assert len(set(colors.values())) == len(colors)
    assert colors["another_opt"] == PALETTE[len(REGISTRY_ORDER["optimizer"])]
    labels = color_map("workload", ["quadratic", "quadratic(condition=10)"])
    assert labels["quadratic"] != labels["quadratic(condition=10)"]
    assert color_of("optimizer", "my_opt", extra) == colors["my_opt"]


def test_palette_is_far_from_the_diverged_red_and_the_background() -> None:
    for color in PALETTE:
        assert delta_e(color, DIVERGED_COLOR) >= 20 and delta_e(color, "#FFFFFF") >= 25


def test_dashes() -> None:
    assert dash_of("scheduler", "constant") == "solid"
    assert dash_of("scheduler", "step") != "solid"


def test_palette_separation_is_as_documented() -> None:
    first = min(delta_e(a, b) for a, b in itertools.combinations(PALETTE[:13], 2))
    every = min(delta_e(a, b) for a, b in itertools.combinations(PALETTE, 2))
    assert first >= 38 and every >= 26 and len(PALETTE) == 24
