"""The registries: origins, discovery, and the entry-point loader against a real installed
plug-in package (a ``*.dist-info`` on the path, a broken entry point among healthy ones)."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _helpers import ROOT, cli_env
from _plugin_fixture import BROKEN, DISTRIBUTION, GOOD, MODULE, install_plugin

from bench_service.engine import (
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULERS,
    WORKLOADS,
    TrialConfig,
    run_trial,
)
from bench_service.engine.hparams import ParamSpace, lr_param
from bench_service.engine.optimizers import OptimizerEntry
from bench_service.engine.registry import Provenance, Registry
from bench_service.engine.schedulers import SchedulerEntry
from bench_service.engine.workloads import ArchOptions, Workload
from bench_service.engine.workloads.quadratic import NoisyQuadratic

REGISTRIES: dict[str, Registry[Any]] = {
    "optimizers": OPTIMIZERS, "schedulers": SCHEDULERS, "regularizers": REGULARIZERS,
    "workloads": WORKLOADS,
}
WORKLOAD_PACKAGE = ROOT / "bench_service" / "engine" / "workloads"


# --- origins ----------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", list(REGISTRIES))
def test_builtin_entries_say_so(axis: str) -> None:
    registry = REGISTRIES[axis]
    names = registry.builtin_names()
    assert names
    assert all(registry.origin(n) == "builtin" for n in names)
    assert registry.provenance(names[0]) == Provenance("builtin")
    assert set(names) <= set(registry.names())


def _sgd_entry(name: str) -> OptimizerEntry:
    return OptimizerEntry(
        name, "SGD registered by a test.", ParamSpace((lr_param(0.1),)),
        lambda params, hp: torch.optim.SGD(params, lr=hp["lr"]), update_rule="w ← w - η g",
    )


class _ThrowawayBowl(NoisyQuadratic):
    name = "throwaway_bowl"


@pytest.fixture
def throwaway_entries() -> Iterator[None]:
    """A throwaway optimizer and workload, registered as any user script would."""
    OPTIMIZERS.register(_sgd_entry("throwaway_sgd"))
    WORKLOADS.register(_ThrowawayBowl)
    try:
        yield
    finally:
        OPTIMIZERS.unregister("throwaway_sgd")
        WORKLOADS.unregister("throwaway_bowl")


def test_a_throwaway_entry_is_local_usable_and_outside_every_builtin_list(
    throwaway_entries: None,
) -> None:
    from test_all_algorithms_example import expected_axes

    from bench_service.engine.catalog import all_algorithms_axes

    assert OPTIMIZERS.origin("throwaway_sgd") == "local"
    assert WORKLOADS.origin("throwaway_bowl") == "local"
    assert "throwaway_sgd" in OPTIMIZERS.names()
    assert "throwaway_sgd" not in OPTIMIZERS.builtin_names()
    assert "throwaway_bowl" not in WORKLOADS.builtin_names()
    # what the project's tests and its generated example list is unchanged
    builtin = {"optimizers": OPTIMIZERS.builtin_names(), "workloads": WORKLOADS.builtin_names()}
    assert all("throwaway" not in n for names in builtin.values() for n in names)
    assert all_algorithms_axes() == expected_axes()
    r = run_trial(TrialConfig.from_dict({
        "workload": "throwaway_bowl", "optimizer": "throwaway_sgd", "budget": {"steps": 5},
    }))
    assert r.status == "completed", r.error


def test_names_must_be_plain_and_entries_of_the_axis_kind() -> None:
    with pytest.raises(ValueError, match="name"):
        OPTIMIZERS.register(_sgd_entry("bad name!"))
    with pytest.raises(TypeError, match="OptimizerEntry"):
        OPTIMIZERS.register(SchedulerEntry("a_schedule", "wrong axis", ParamSpace(()),
                                           lambda *a: None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"already registered \(builtin\)"):
        OPTIMIZERS.register(_sgd_entry("adam"))
    assert "bad name!" not in OPTIMIZERS and "a_schedule" not in OPTIMIZERS

    class NoTarget(NoisyQuadratic):
        name = "no_target"
        target = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match="no target"):
        WORKLOADS.register(NoTarget)
    class Unfinished(Workload):
        name = "unfinished"

    with pytest.raises(TypeError, match="does not implement"):
        WORKLOADS.register(Unfinished)  # type: ignore[type-abstract]
    assert "no_target" not in WORKLOADS and "unfinished" not in WORKLOADS


# --- discovery: a workload is one file ------------------------------------------------------
def _public_modules() -> set[str]:
    return {p.stem for p in WORKLOAD_PACKAGE.glob("*.py") if not p.stem.startswith("_")}


def test_every_workload_module_is_discovered_without_a_list() -> None:
    modules = {WORKLOADS.get(n).__module__.rsplit(".", 1)[1] for n in WORKLOADS.builtin_names()}
    assert modules == _public_modules() - {"base"}


def test_workload_modules_never_import_the_package_they_are_discovered_from() -> None:
    """No cycle: the package imports no workload module, and no module imports its names."""
    for path in WORKLOAD_PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "bench_service.engine.workloads", path.name
    code = (
        "import sys\n"
        "import bench_service.engine.workloads as w\n"
        "loaded = [m for m in sys.modules if m.startswith('bench_service.engine.workloads.')]\n"
        "assert sorted(loaded) == ['bench_service.engine.workloads._registry',"
        " 'bench_service.engine.workloads.base'], loaded\n"
        "assert 'quadratic' in w.WORKLOADS.names()\n"
        "assert 'bench_service.engine.workloads.quadratic' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], env=cli_env(), check=True, timeout=300)


# --- the plug-in loader, against an installed package ---------------------------------------
@pytest.fixture
def plugin_site(tmp_path: Path) -> Iterator[Path]:
    site = install_plugin(tmp_path / "site")
    yield site
    sys.modules.pop(MODULE, None)


def test_loader_skips_a_broken_entry_point_and_loads_the_rest(
    plugin_site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    registry: Registry[OptimizerEntry] = Registry("optimizers", kind=OptimizerEntry)
    registry.register(OPTIMIZERS.get("adam"), origin="builtin")
    with caplog.at_level(logging.WARNING, logger="bench_service.plugins"):
        names = registry.names()
    # (other plug-ins installed in this environment may add their own entries)
    ours = [n for n in names if registry.provenance(n).distribution == DISTRIBUTION]
    assert names[0] == "adam" and ours == list(GOOD["optimizers"])
    assert registry.builtin_names() == ["adam"]
    assert registry.provenance("plugin_pair_b") == Provenance("plugin", DISTRIBUTION)
    assert registry.get("adam") is OPTIMIZERS.get("adam")  # the clash did not replace it
    problems = [str(p) for p in registry.problems if p.distribution == DISTRIBUTION]
    assert len(problems) == 2
    assert BROKEN in problems[0] and DISTRIBUTION in problems[0]
    assert "AttributeError" in problems[0] and "MISSING_ENTRY" in problems[0]
    assert "'adam' is already registered (builtin)" in problems[1]
    warned = [r.getMessage() for r in caplog.records if DISTRIBUTION in r.getMessage()]
    assert len(warned) == 2 and all("\n" not in w for w in warned)
    assert "broken" in warned[0]


def test_a_plugin_workload_class_loads_and_builds(
    plugin_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    workloads: Registry[type[Workload]] = Registry("workloads", kind=Workload)
    ours = [n for n in workloads.names()
            if workloads.provenance(n).distribution == DISTRIBUTION]
    assert ours == list(GOOD["workloads"])
    assert workloads.provenance("plugin_bowl") == Provenance("plugin", DISTRIBUTION)
    model = workloads.get("plugin_bowl")().init_model(0, ArchOptions())
    assert float(model(torch.zeros(1, 1))[0].detach()) == 12.0  # |(2, 2, 2)|²


def _bench(site: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env["PYTHONPATH"] = f"{site}{':' + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''}"
    # main() without the console script's early Ray start: a refused spec starts nothing.
    code = "import sys\nfrom bench_service.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_bench_list_survives_a_broken_plugin(plugin_site: Path, tmp_path: Path) -> None:
    out = _bench(plugin_site, "list", tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("  ")
              and not line.strip().startswith("params:")}
    assert set(GOOD["optimizers"]) | set(GOOD["workloads"]) <= listed
    assert {"adam", "quadratic", "cosine", "dropout"} <= listed
    assert "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines()
                if "skipped plug-in" in line and DISTRIBUTION in line]
    assert len(warnings) == 2, out.stderr
    assert BROKEN in warnings[0] and DISTRIBUTION in warnings[0]
    assert "AttributeError" in warnings[0]


def test_bench_run_resolves_plugin_names_despite_a_broken_plugin(
    plugin_site: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: plugin_spec\nworkloads: [plugin_bowl]\n"
        "optimizers: [{name: plugin_sgd, params: {lr: -1.0}}]\nseeds: [0]\n"
        "budget: {epochs: 1}\n"
    )
    out = _bench(plugin_site, "run", str(spec), "--db", str(tmp_path / "b.db"), tmp=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "optimizers[0].params.lr" in out.stderr
    assert "Traceback" not in out.stderr
    assert "skipped plug-in" in out.stderr
