"""A small generic registry: names to entries, with entry-point plug-ins and helpful errors.

One registry per axis (optimizers, schedulers, regularizers, workloads). Adding an algorithm
is one ``register(...)`` call (or ``@REGISTRY.register`` decorator) beside its implementation;
a registry may also *discover* its built-in modules (every module of a package, imported on
the first lookup), so that a new file is all a new workload needs. Third-party packages add
theirs with an entry point in the group ``bench_service.<axis>`` whose object is an entry, a
callable returning one, or a list of entries (docs/plugins.md).

Every entry has an *origin*: ``builtin`` (registered by a ``bench_service`` module),
``plugin`` (loaded from an entry point, with its distribution's name) or ``local``
(registered at run time by anything else: a script, a test). The project's own tests and
examples use ``builtin_names()`` only, so that an installed plug-in or a test's throwaway
entry cannot change what they check.

A plug-in that fails to load (missing attribute, import error, wrong type, a name already
taken) is skipped with one warning line naming it; the other plug-ins still load.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import fnmatch
import importlib
import logging
import pkgutil
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, Literal, Protocol, TypeVar

from bench_service.engine.errors import ConfigError, UnknownNameError

Origin = Literal["builtin", "plugin", "local"]
ORIGINS: tuple[Origin, ...] = ("builtin", "plugin", "local")

#: The logger plug-in problems are reported on (one line each).
log = logging.getLogger("bench_service.plugins")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_PACKAGE = "bench_service"
#: The distribution whose entry point is loading now (any registry's): what a plug-in module
#: registers while it is imported is that plug-in's, whichever registry it registers into.
_LOADING_DIST: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bench_service_loading_dist", default=None
)


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


@dataclass(frozen=True)
class Provenance:
    """Where a registered entry comes from."""

    origin: Origin
    #: The installed distribution (``pip`` name) of a plug-in; ``None`` otherwise.
    distribution: str | None = None


@dataclass(frozen=True)
class PluginProblem:
    """A plug-in entry point that was skipped, and why (also logged as one warning line)."""

    group: str
    entry_point: str
    distribution: str | None
    error: str

    def __str__(self) -> str:
        dist = f" from {self.distribution}" if self.distribution else ""
        return (f"skipped plug-in {self.entry_point!r}{dist} (entry point group "
                f"{self.group}): {self.error}")


def _caller_module(skip: int) -> str:
    """``__name__`` of the module ``skip`` frames above the caller (``""`` if unknown)."""
    try:
        frame = sys._getframe(skip + 1)
    except ValueError:  # pragma: no cover - shallower stack than expected
        return ""
    return str(frame.f_globals.get("__name__", ""))


def _is_project_module(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def package_modules(package: str) -> Callable[[], list[str]]:
    """A discovery function: every public module of ``package`` (for ``Registry(discover=)``).

    Private modules (``_name``) are skipped, so helpers shared by several entries can live
    beside them without being imported for discovery.
    """

    def discover() -> list[str]:
        pkg = importlib.import_module(package)
        return [
            f"{package}.{info.name}"
            for info in pkgutil.iter_modules(pkg.__path__)
            if not info.name.startswith("_")
        ]

    return discover


class Registry(Generic[E]):
    """Entries of one axis, found by name.

    Args:
        axis: Plural axis name (``"optimizers"``); also names the entry-point group.
        kind: The type every entry must be (an instance of it, or for class entries such as
            workloads a subclass); plug-ins of another type are skipped with a warning.
        discover: Returns the modules that register the built-in entries; they are imported
            on the first lookup (``package_modules(...)`` imports a whole package).
        validate: Further checks of an entry (raising ``TypeError``/``ValueError``) before it
            is registered, e.g. that a workload class is concrete and declares its target.

    Built-in modules and entry-point plug-ins are loaded lazily on the first lookup so that
    importing the engine stays cheap and a broken plug-in cannot break unrelated commands.
    """

    def __init__(
        self,
        axis: str,
        *,
        kind: type | None = None,
        discover: Callable[[], Iterable[str]] | None = None,
        validate: Callable[[Any], None] | None = None,
    ) -> None:
        self.axis = axis
        self.kind = kind
        self._validate = validate
        self._discover = discover
        self._entries: dict[str, E] = {}
        self._aliases: dict[str, str] = {}
        self._provenance: dict[str, Provenance] = {}
        self._loaded = False
        self._lock = threading.RLock()
        #: Plug-ins skipped so far (each also logged once on ``bench_service.plugins``).
        self.problems: list[PluginProblem] = []

    @property
    def entry_point_group(self) -> str:
        return f"bench_service.{self.axis}"

    @property
    def singular(self) -> str:
        return self.axis[:-1]

    # --- registering ----------------------------------------------------------------------
    def register(
        self,
        entry: E,
        *,
        aliases: Iterable[str] = (),
        replace: bool = False,
        origin: Origin | None = None,
    ) -> E:
        """Add ``entry`` and return it (so this also works as a class decorator).

        A duplicate name is an error unless ``replace`` is set. ``origin`` is inferred when
        not given: ``plugin`` while an entry point loads, ``builtin`` when the registering
        module (a class entry's own module) is part of ``bench_service``, else ``local``.
        """
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"{self.axis}: an entry needs a name of letters, digits, '_', '.' or '-' "
                f"(starting with a letter or '_'), got {repr(name)[:60]}"
            )
        self._check_kind(entry)
        if self._validate is not None:
            self._validate(entry)
        if origin is None:
            origin, dist = self._infer_origin(entry)
        else:
            dist = _LOADING_DIST.get() if origin == "plugin" else None
        key = name.lower()
        with self._lock:
            if not replace and (key in self._entries or key in self._aliases):
                owner = self._provenance.get(self._aliases.get(key, key))
                held = f" ({owner.origin})" if owner else ""
                raise ValueError(f"{self.axis}: {name!r} is already registered{held}")
            self._entries[key] = entry
            self._provenance[key] = Provenance(origin, dist)
            for alias in aliases:
                self._aliases[alias.lower()] = key
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (for tests and plug-in reloads)."""
        key = name.lower()
        with self._lock:
            self._entries.pop(key, None)
            self._provenance.pop(key, None)
            self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    def _infer_origin(self, entry: Any) -> tuple[Origin, str | None]:
        dist = _LOADING_DIST.get()
        if dist is not None:
            return "plugin", dist
        # A class knows its module; an instance is attributed to the caller of register()
        # (two frames up: _infer_origin <- register <- caller).
        module = entry.__module__ if isinstance(entry, type) else _caller_module(2)
        return ("builtin" if _is_project_module(module) else "local"), None

    def _check_kind(self, entry: Any) -> None:
        """Raise ``TypeError`` unless ``entry`` is a ``kind`` (or, for classes, a subclass)."""
        kind = self.kind
        if kind is None or isinstance(entry, kind):
            return
        if isinstance(entry, type) and issubclass(entry, kind):
            return
        got = entry.__name__ if isinstance(entry, type) else type(entry).__name__
        raise TypeError(f"{self.axis}: expected a {kind.__name__}, got {got}")

    # --- loading ---------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # before loading: a module may look names up while importing
            if self._discover is not None:
                modules = list(self._discover())
                for module in modules:
                    importlib.import_module(module)
                self._order_by_module(modules)
            self._load_plugins()

    def _order_by_module(self, modules: list[str]) -> None:
        """Built-in entries in discovery order (then registration order within a module),
        whichever module a process happened to import first: ``names()`` is the same in
        every process (``bench list``, the generated example, colours)."""
        rank = {m: i for i, m in enumerate(modules)}
        order = sorted(enumerate(self._entries.items()), key=lambda item: (
            rank.get(getattr(item[1][1], "__module__", ""), len(rank)), item[0]))
        self._entries = {key: entry for _, (key, entry) in order}

    def _load_plugins(self) -> None:
        try:
            eps = list(metadata.entry_points(group=self.entry_point_group))
        except Exception as exc:  # broken metadata of some installed distribution
            self._problem("*", None, f"{type(exc).__name__}: {exc}")
            return
        for ep in eps:
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else None
        label = f"{ep.name} = {ep.value}"
        try:
            with self._loading_plugin(dist or "?"):
                obj = ep.load()
                if callable(obj) and not hasattr(obj, "name"):
                    obj = obj()
                items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        except Exception as exc:
            self._problem(label, dist, f"{type(exc).__name__}: {exc}")
            return
        for item in items:
            key = str(getattr(item, "name", "")).lower()
            if key and self._entries.get(key) is item:
                continue  # the plug-in's module registered it itself while loading
            try:
                with self._loading_plugin(dist or "?"):
                    self.register(item, origin="plugin")
            except (TypeError, ValueError) as exc:
                self._problem(label, dist, str(exc))

    @staticmethod
    @contextlib.contextmanager
    def _loading_plugin(dist: str) -> Iterator[None]:
        token = _LOADING_DIST.set(dist)
        try:
            yield
        finally:
            _LOADING_DIST.reset(token)

    def _problem(self, entry_point: str, dist: str | None, error: str) -> None:
        problem = PluginProblem(self.entry_point_group, entry_point, dist, " ".join(error.split()))
        self.problems.append(problem)
        log.warning("bench_service: %s", problem)

    # --- looking up ------------------------------------------------------------------------
    def get(self, name: str, where: str = "") -> E:
        """Return the entry called ``name`` or raise ``UnknownNameError`` with suggestions."""
        if not isinstance(name, str) or not name:
            raise ConfigError(where or self.axis, f"must be a {self.singular} name, got {name!r}")
        self._ensure_loaded()
        key = name.lower()
        key = self._aliases.get(key, key)
        try:
            return self._entries[key]
        except KeyError:
            hint = closest(key, list(self._entries) + list(self._aliases))
            raise UnknownNameError(
                where or self.axis,
                f"unknown {self.singular} {name[:100]!r}{hint}; "
                f"valid: {', '.join(self.names())}",
            ) from None

    def names(self, pattern: str = "*", *, origin: Origin | None = None) -> list[str]:
        """Registered names matching a glob pattern (and ``origin``), in registration order."""
        self._ensure_loaded()
        return [
            n for n in list(self._entries)
            if fnmatch.fnmatch(n, pattern)
            and (origin is None or self._provenance[n].origin == origin)
        ]

    def builtin_names(self, pattern: str = "*") -> list[str]:
        """Names of the project's own entries: what its tests and examples cover."""
        return self.names(pattern, origin="builtin")

    def provenance(self, name: str) -> Provenance:
        """Origin (and a plug-in's distribution) of the entry called ``name``."""
        entry = self.get(name)
        return self._provenance[entry.name.lower()]

    def origin(self, name: str) -> Origin:
        """``builtin``, ``plugin`` or ``local`` (see the module docstring)."""
        return self.provenance(name).origin

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and (
            name.lower() in self._entries or name.lower() in self._aliases
        )

    def __iter__(self) -> Iterator[E]:
        self._ensure_loaded()
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)
