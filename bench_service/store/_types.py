"""Column types that keep values faithful across SQLite and PostgreSQL.

Two portability problems are solved here rather than in every query:

* **Time zones.** SQLite has no time-zone-aware timestamp, PostgreSQL returns ``timestamptz``
  in the session's zone. ``UTCDateTime`` stores UTC and always hands back aware UTC datetimes.
* **Non-finite floats in JSON.** PostgreSQL's ``json`` rejects ``NaN``/``Infinity`` (SQLite
  would accept them, so the two backends would disagree). ``JSONValue`` writes non-finite
  floats as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (the same spelling as the
  ``special`` column of ``bench_metrics``) and turns exactly those strings back into floats on
  read. The one ambiguity: a genuine *string* ``"nan"``/``"inf"``/``"-inf"`` inside a stored
  document also comes back as a float.
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Spelling of non-finite floats wherever the store writes them as text.
SPECIAL_VALUES: dict[str, float] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (what every timestamp column holds)."""
    return datetime.now(timezone.utc)


def special_of(value: float) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float, ``None`` for a finite one."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def finite_or_none(value: Any) -> float | None:
    """A float for scalar summary columns: non-finite and missing values become ``NULL``.

    Scalar columns exist to sort and filter in SQL, where NaN/inf would sort differently on
    each backend; the faithful value stays in the JSON column beside them.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def encode_json(obj: Any) -> Any:
    """Make ``obj`` storable as JSON on every backend (non-finite floats → strings)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        f = float(obj)
        return f if math.isfinite(f) else special_of(f)
    if isinstance(obj, dict):
        return {str(k): encode_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_json(v) for v in obj]
    return obj


def decode_json(obj: Any) -> Any:
    """Undo ``encode_json``: the strings ``"nan"``, ``"inf"``, ``"-inf"`` become floats."""
    if isinstance(obj, str):
        return SPECIAL_VALUES.get(obj, obj)
    if isinstance(obj, dict):
        return {k: decode_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_json(v) for v in obj]
    return obj


class JSONValue(TypeDecorator[Any]):
    """``JSON`` whose non-finite floats survive PostgreSQL (see the module docstring)."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else encode_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else decode_json(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC ``datetime``.

    Naive datetimes given to it are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        # SQLite keeps no zone; storing the naive UTC wall time keeps text order = time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
