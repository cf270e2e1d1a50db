"""Honest layers: the light parts stay light and nothing imports upward.

(a) ``bench_service.store``, ``bench_service.sweep.spec`` and the CLI's start-up (``--help``,
``--version``, ``bench sweeps``) load no torch, Ray or Optuna: checked in a fresh interpreter,
since this test process has long imported them all.
(b) Every import in ``bench_service/**.py`` (lazy and ``TYPE_CHECKING`` ones included) goes to
the same layer or one below: vocab < engine < store < sweep < cluster < cli / api / dashboard.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import ROOT, cli_env

from bench_service.store import Store

HEAVY = ("torch", "ray", "optuna")
PACKAGE = ROOT / "bench_service"

#: Layer of each top-level part of the package, bottom up. The package root (version, lazy
#: exports) and ``vocab`` are importable by every layer.
LAYERS: dict[str, int] = {
    "": 0, "vocab": 0,
    "engine": 1,
    "store": 2,
    "sweep": 3,
    "cluster": 4, "analysis": 4,
    "cli": 5, "cli_deepobs": 5, "cli_data": 5, "cli_analyze": 5, "api": 5, "dashboard": 5,
    "dashboard_launcher": 5, "results": 5, "cli_service": 5, "client": 5,
}


def _heavy_after(code: str) -> list[str]:
    """The heavy modules loaded by running ``code`` in a fresh interpreter."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["bench_service.store", "bench_service.sweep.spec",
                                    "bench_service.vocab", "bench_service.cli"])
def test_light_modules_import_no_torch_ray_or_optuna(module: str) -> None:
    assert _heavy_after(f"import {module}") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["results", "--help"]])
def test_cli_start_up_loads_no_torch_ray_or_optuna(argv: list[str]) -> None:
    code = ("import contextlib, io\n"
            "from bench_service.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        main({argv!r})\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code")
    assert _heavy_after(code) == []


def test_bench_sweeps_loads_no_torch_ray_or_optuna(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    Store(db).close()
    code = ("import contextlib, io\n"
            "from bench_service.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['sweeps', '--db', {str(db)!r}]) == 0")
    assert _heavy_after(code) == []


# --------------------------------------------------------------------- import direction


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path`` (module ``name``), relative
    ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from bench_service import cluster`` imports a part, not the root
            if target == "bench_service":
                found += [(node.lineno, f"bench_service.{a.name}") for a in node.names
                          if a.name in LAYERS]
    return found


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    assert part in LAYERS, f"{module}: add its part to LAYERS in tests/test_layers.py"
    return LAYERS[part]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer() -> None:
    for path in SOURCES:
        _layer(_module_name(path))


def test_the_walk_sees_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import records\n"
        "from ..store import Store\n"
        "if TYPE_CHECKING:\n"
        "    import bench_service.sweep\n"
        "def f():\n"
        "    from bench_service import cluster\n"
    )
    found = [t for _, t in _imports(probe, "bench_service.engine.probe")]
    assert found == ["typing", "bench_service.engine", "bench_service.store",
                     "bench_service.sweep", "bench_service", "bench_service.cluster"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_downward(path: Path) -> None:
    module = _module_name(path)
    own = _layer(module)
    imports = _imports(path, module)
    upward = [f"line {line}: {target}" for line, target in imports
              if (target == "bench_service" or target.startswith("bench_service."))
              and _layer(target) > own]
    outside = [f"line {line}: {target}" for line, target in imports
               if target.split(".")[0] == "dashboard"]
    assert not upward, f"{module} imports upward: {upward}"
    assert not outside, f"{module} imports the top-level dashboard/: {outside}"
