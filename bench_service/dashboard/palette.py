"""One colour per algorithm, the same on every page and in every sweep.

Colours are assigned by position in the engine's registries (``OPTIMIZERS.names()`` etc.),
not by position in the current sweep, so ``adam`` has the same colour whether a sweep holds
two optimizers or thirteen. The registry orders are mirrored here rather than imported:
importing the registries imports PyTorch (seconds, hundreds of MB) into a process that
only reads a database. The mirror only keeps existing colours stable: a new registry entry
missing here takes a free slot after the mirrored ones (``tests/dashboard`` checks every
built-in entry gets a distinguishable colour), so adding an algorithm stays one entry in one
file.

Names not in a registry (third-party plug-ins, workload labels such as
``quadratic(condition=10)``, hyperparameter names, seeds) take the slots after the
registry's, by their sorted position among the names a chart shows (``color_map``), so they
never share a colour with each other or with a registered name while the palette lasts. The
palette is chosen for distinct hues: every two of its first 13 colours (as many as there are
built-in optimizers) are at least 38 apart in CIELAB (ΔE*76; about 2.3 is a just-noticeable
difference), every two of all 24 at least 26, and none is close to the red of the
"diverged" markers or to the white background.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Registry orders (``bench_service.engine`` ``*.names()``); kept equal by a test.
REGISTRY_ORDER: dict[str, tuple[str, ...]] = {
    "optimizer": (
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
        "nadam", "radam", "adamax", "yogi", "lion",
    ),
    "scheduler": (
        "constant", "step", "multistep", "exponential", "cosine", "cosine_restarts", "plateau",
        "warmup_cosine", "warmup_step", "factor", "sqrt", "poly",
    ),
    "regularizer": (
        "none", "l1", "l2", "weight_decay", "decoupled_weight_decay", "dropout", "batchnorm",
        "layernorm", "groupnorm", "instancenorm",
    ),
    "workload": (
        "char_lm", "logreg_digits", "mlp_digits", "cnn_digits", "linreg", "quadratic",
        "rosenbrock",
    ),
}

#: 24 colours, greedily picked from Plotly's qualitative palettes to be as far apart as
#: possible in CIELAB (each next one the farthest from those before it and from the
#: "diverged" red and white), so the first colours are the most distinct.
PALETTE: tuple[str, ...] = (
    "#1F77B4", "#FE00FA", "#1CA71C", "#E6AB02", "#F781BF", "#736F4C", "#636EFA", "#511CFB",
    "#11A579", "#F89C74", "#990099", "#6F4070", "#FC0080", "#17BECF", "#999933", "#B497E7",
    "#FF7F0E", "#B2828D", "#862A16", "#FC1CBF", "#87C55F", "#6E899C", "#B00068", "#24796C",
)
#: Line dashes (used for the scheduler when lines are whole cells).
DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: Trial statuses, in the colours people expect (green good, red bad, grey not run).
STATUS_COLORS: dict[str, str] = {
    "completed": "#2CA02C",
    "running": "#1F77B4",
    "pending": "#C7C7C7",
    "diverged": "#D62728",
    "failed": "#8C1B13",
    "pruned": "#9E9E9E",
    "cancelled": "#FF7F0E",
}
#: Colour of the "diverged here" markers.
DIVERGED_COLOR = "#D62728"


def slots(axis: str, values: Iterable[object]) -> dict[str, int]:
    """``{name: slot}``: a registered name's registry position, then the other names in
    sorted order after the registry (stable for a given set of unregistered names)."""
    order = REGISTRY_ORDER.get(axis, ())
    position = {name: i for i, name in enumerate(order)}
    names = sorted({str(v) for v in values})
    out = {n: position[n] for n in names if n in position}
    out.update({n: len(order) + i for i, n in enumerate(n for n in names if n not in position)})
    return out


def color_map(axis: str, values: Iterable[object]) -> dict[str, str]:
    """``{value: colour}`` for the values one chart shows on one axis (``optimizer``,
    ``scheduler``, ``param``, ``seed``, ...); statuses use ``STATUS_COLORS``."""
    values = list(values)
    out = {str(v): STATUS_COLORS[str(v)] for v in values
           if axis == "status" and str(v) in STATUS_COLORS}
    rest = [v for v in values if str(v) not in out]
    out.update({n: PALETTE[i % len(PALETTE)] for n, i in slots(axis, rest).items()})
    return out


def color_of(axis: str, value: object, among: Iterable[object] = ()) -> str:
    """The colour of ``value`` on ``axis`` in a chart that shows ``among`` too (needed only
    for names outside the registry: they are placed by their position among those)."""
    return color_map(axis, [value, *among])[str(value)]


def dash_map(axis: str, values: Iterable[object]) -> dict[str, str]:
    """``{value: line dash}`` (a second visual channel beside colour), placed as colours;
    past the palette's end (where colours repeat) the dash shifts, so a repeated colour never
    comes with the same dash."""
    return {n: DASHES[(i + i // len(PALETTE)) % len(DASHES)]
            for n, i in slots(axis, values).items()}


def dash_of(axis: str, value: object, among: Iterable[object] = ()) -> str:
    """A line dash for ``value`` on ``axis`` (see ``color_of`` for ``among``)."""
    return dash_map(axis, [value, *among])[str(value)]
