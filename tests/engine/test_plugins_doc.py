"""docs/plugins.md runs as written: its example plug-in, installed for real, works everywhere.

The first ``python`` block is the plug-in module and the ``toml`` block its entry points:
the test writes them into a site folder as an installed distribution (``*.dist-info``), then
runs every ``python`` block and every ``bash`` line of the page against it in fresh
processes (``pip install`` lines are what that installation stands for).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from _helpers import ROOT, cli_env

DOC = ROOT / "docs" / "plugins.md"
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```", re.S | re.M)
GROUPS = {f"bench_service.{axis}"
          for axis in ("optimizers", "schedulers", "regularizers", "workloads")}


def blocks(lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(DOC.read_text()) if m.group(1) == lang]


def _entry_points() -> dict[str, dict[str, str]]:
    (toml,) = blocks("toml")
    return tomllib.loads(toml)["project"]["entry-points"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The page's plug-in installed into a site folder; a work folder and its environment."""
    root = tmp_path_factory.mktemp("plugin_doc")
    site, work = root / "site", root / "work"
    site.mkdir()
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    project = tomllib.loads(blocks("toml")[0])["project"]
    module = next(iter(next(iter(_entry_points().values())).values())).split(":")[0]
    (site / f"{module}.py").write_text(blocks("python")[0])
    info = site / f"{module}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in _entry_points().items()
    ))
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["BENCH_DB_URL"] = f"sqlite:///{work / 'bench.db'}"
    return work, env


def _run(cmd: list[str] | str, work: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=work, env=env, shell=isinstance(cmd, str),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{cmd!r}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr


def test_the_page_declares_every_group_and_only_real_ones() -> None:
    assert set(_entry_points()) == GROUPS
    assert len(blocks("python")) >= 2 and blocks("bash")


def test_the_example_module_runs_as_a_script_without_installing(tmp_path: Path) -> None:
    out = _run([sys.executable, "-c", blocks("python")[0]], tmp_path, cli_env())
    assert out.startswith("completed val_loss")


def test_every_python_block_runs_with_the_plugin_installed(
    installed: tuple[Path, dict[str, str]],
) -> None:
    work, env = installed
    outputs = [_run([sys.executable, "-c", block], work, env) for block in blocks("python")]
    assert "completed" in outputs[0]
    assert "'sign_sgd'" in outputs[1]  # names(origin="plugin")
    assert "Provenance(origin='builtin', distribution=None)" in outputs[1]


def test_every_bash_line_runs_and_lists_the_plugins_entries(
    installed: tuple[Path, dict[str, str]],
) -> None:
    work, env = installed
    names = {k for eps in _entry_points().values() for k in eps}
    listed = ""
    for block in blocks("bash"):
        for line in filter(None, (raw.strip() for raw in block.splitlines())):
            if line.startswith("pip install"):
                continue  # the site folder holds what it installs
            listed += _run(line, work, env)
    assert {"sign_sgd", "bowl"} <= names
    for name in ("sign_sgd", "bowl"):
        assert re.search(rf"^  {name}\s", listed, re.M), listed


def test_the_installed_entries_are_plugins_and_train_together(
    installed: tuple[Path, dict[str, str]],
) -> None:
    work, env = installed
    code = (
        "from bench_service.engine import OPTIMIZERS, REGULARIZERS, SCHEDULERS, WORKLOADS,"
        " run_trial\n"
        "r = run_trial({'workload': 'bowl', 'optimizer': 'sign_sgd', 'scheduler': 'halving',"
        " 'regularizer': 'l4', 'budget': {'epochs': 2}})\n"
        "assert r.status == 'completed', r.error\n"
        "for reg, name in ((OPTIMIZERS, 'sign_sgd'), (SCHEDULERS, 'halving'),"
        " (REGULARIZERS, 'l4'), (WORKLOADS, 'bowl')):\n"
        "    p = reg.provenance(name)\n"
        "    assert (p.origin, p.distribution) == ('plugin', 'my-bench-plugin'), p\n"
        "    assert name not in reg.builtin_names()\n"
        "    assert not [p for p in reg.problems if p.distribution == 'my-bench-plugin']\n"
        "print('ok')\n"
    )
    assert _run([sys.executable, "-c", code], work, env).startswith("ok\n")
