"""One colour per algorithm, the same on every page and in every sweep.

Colours are assigned by position in the engine's registries (``OPTIMIZERS.names()`` etc.),
not by position in the current sweep, so ``adam`` has the same colour whether a sweep holds
two optimizers or thirteen. The registry orders are mirrored here rather than imported:
importing the registries imports PyTorch (seconds, hundreds of MB) into a process that
only reads a database. ``tests/dashboard`` checks that the mirror equals the registries, so
adding an algorithm to the engine without adding it here fails a test. Names not in a
registry (third-party plugins) get a stable colour derived from their name.
"""

from __future__ import annotations

import hashlib
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

#: 24 well-separated colours (Plotly's "Dark24"), then 6 more for long registries.
PALETTE: tuple[str, ...] = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
    "#17BECF", "#BCBD22", "#8C564B", "#7F7F7F", "#FF7F0E", "#9467BD",
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


def _index(axis: str, value: str) -> int:
    order = REGISTRY_ORDER.get(axis, ())
    if value in order:
        return order.index(value)
    digest = hashlib.sha1(f"{axis}:{value}".encode()).digest()
    return len(order) + int.from_bytes(digest[:4], "big")


def color_of(axis: str, value: object) -> str:
    """The colour of ``value`` on ``axis`` (``optimizer``, ``scheduler``, ...).

    Other axes (seed, status, ...) get colours by value too; statuses use ``STATUS_COLORS``.
    """
    text = str(value)
    if axis == "status" and text in STATUS_COLORS:
        return STATUS_COLORS[text]
    return PALETTE[_index(axis, text) % len(PALETTE)]


def dash_of(axis: str, value: object) -> str:
    """A line dash for ``value`` on ``axis`` (a second visual channel beside colour)."""
    return DASHES[_index(axis, str(value)) % len(DASHES)]


def color_map(axis: str, values: Iterable[object]) -> dict[str, str]:
    """``{value: colour}`` for the given values of one axis."""
    return {str(v): color_of(axis, v) for v in values}
