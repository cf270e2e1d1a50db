"""A small generic registry: names to entries, with entry-point plug-ins and helpful errors.

One registry per axis (optimizers, schedulers, regularizers, workloads). Adding an algorithm
is one ``register(...)`` call beside its implementation; third-party packages add theirs with
an entry point in the group ``bench_service.<axis>`` whose object is an entry (or a callable
returning one, or an iterable of entries).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Generic, Protocol, TypeVar

from bench_service.engine.errors import ConfigError, UnknownNameError


class Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)


def closest(name: str, valid: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean 'x' or 'y'?)"`` for the closest valid names, or ``""``."""
    matches = difflib.get_close_matches(name, sorted(valid), n=n, cutoff=0.5)
    if not matches:
        return ""
    return " (did you mean " + " or ".join(repr(m) for m in matches) + "?)"


class Registry(Generic[E]):
    """Entries of one axis, found by name.

    Entry-point plug-ins are loaded lazily on the first lookup so that importing the engine
    stays cheap and a broken plug-in cannot break unrelated commands.
    """

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._entries: dict[str, E] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False

    @property
    def entry_point_group(self) -> str:
        return f"bench_service.{self.axis}"

    def register(self, entry: E, *, aliases: Iterable[str] = (), replace: bool = False) -> E:
        """Add ``entry``; a duplicate name is an error unless ``replace`` is set."""
        key = entry.name.lower()
        if not replace and (key in self._entries or key in self._aliases):
            raise ValueError(f"{self.axis}: {entry.name!r} is already registered")
        self._entries[key] = entry
        for alias in aliases:
            self._aliases[alias.lower()] = key
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (for tests and plug-in reloads)."""
        key = name.lower()
        self._entries.pop(key, None)
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            obj = ep.load()
            if callable(obj) and not hasattr(obj, "name"):
                obj = obj()
            items = obj if isinstance(obj, (list, tuple)) else [obj]
            for item in items:
                if item.name.lower() not in self._entries:
                    self.register(item)

    def get(self, name: str, where: str = "") -> E:
        """Return the entry called ``name`` or raise ``UnknownNameError`` with suggestions."""
        if not isinstance(name, str) or not name:
            raise ConfigError(where or self.axis, f"must be a {self.axis[:-1]} name, got {name!r}")
        self._load_plugins()
        key = name.lower()
        key = self._aliases.get(key, key)
        try:
            return self._entries[key]
        except KeyError:
            hint = closest(key, list(self._entries) + list(self._aliases))
            raise UnknownNameError(
                where or self.axis,
                f"unknown {self.axis[:-1]} {name!r}{hint}; "
                f"valid: {', '.join(self.names())}",
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, in registration order."""
        self._load_plugins()
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return isinstance(name, str) and (
            name.lower() in self._entries or name.lower() in self._aliases
        )

    def __iter__(self) -> Iterator[E]:
        self._load_plugins()
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)
