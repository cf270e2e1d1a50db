"""What changed between two normalised specs, in lines a user can act on.

``bench run`` refuses a spec that changed under an existing sweep name (resuming would mix
results of two experiments) and shows these lines so the user sees why:

    optimizers: added yogi(lr=0.01), removed sgd
    budget.epochs: 20 -> 30
    seeds: added 3

Order-only changes of axes, seeds and exclude rules are not changes (they run the same
trials), and neither is the sweep's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench_service.sweep.errors import clip
from bench_service.vocab import SPEC_AXES

#: Longest text shown for one value or one list of added/removed items.
_SHOWN = 120

#: Lists compared as sets of items, with the label each item is shown by.
_SET_FIELDS = {*SPEC_AXES, "seeds", "exclude", "tuning.final_seeds"}
_IGNORED = {"name"}


def _fmt(value: Any) -> str:
    """Compact YAML-like text: ``{epochs: 20}``, ``[0, 1]``, ``1e-05``, ``(unset)``."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _item_label(path: str, item: Any) -> str:
    if path in SPEC_AXES and isinstance(item, Mapping):
        params = item.get("params") or {}
        if not params:
            return str(item.get("name"))
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
        return f"{item.get('name')}({inner})"
    return _fmt(item)


def _key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str)


def _diff_set(path: str, old: Any, new: Any) -> list[str]:
    old_items = {_key(i): i for i in (old or [])}
    new_items = {_key(i): i for i in (new or [])}
    added = [_item_label(path, new_items[k]) for k in new_items if k not in old_items]
    removed = [_item_label(path, old_items[k]) for k in old_items if k not in new_items]
    parts = []
    if added:
        parts.append(clip("added " + ", ".join(added), _SHOWN))
    if removed:
        parts.append(clip("removed " + ", ".join(removed), _SHOWN))
    if not parts:
        return []
    return [f"{path}: {'; '.join(parts) if path == 'exclude' else ', '.join(parts)}"]


def _diff(path: str, old: Any, new: Any) -> list[str]:
    if path in _SET_FIELDS and isinstance(old or [], list) and isinstance(new or [], list):
        return _diff_set(path, old, new)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        lines: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            if sub in _IGNORED:
                continue
            lines += _diff(sub, old.get(key), new.get(key))
        return lines
    if _key(old) == _key(new):
        return []
    return [f"{path}: {clip(_fmt(old), _SHOWN)} -> {clip(_fmt(new), _SHOWN)}"]


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human lines describing how normalised spec ``new`` differs from ``old``.

    Both are ``SweepSpec.to_dict()`` / ``SweepPlan.spec_dict`` values (``old`` as stored in
    the database). An empty list means the specs run the same experiment.
    """
    return _diff("", old, new)
