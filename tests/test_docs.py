"""Every spec and code block in the README and docs/ runs as written.

A user copies blocks from the README; a block that fails as written is a broken promise. So
each fenced block is extracted and run:

* ``yaml`` blocks are complete sweep specs: parsed, validated and planned (nothing run);
* ``python`` blocks run in a fresh interpreter, in a scratch folder whose database holds the
  sweeps the README's own commands created;
* ``bash`` blocks run line by line, in document order, in that scratch folder (``examples/``
  linked in), against a scratch SQLite database (``BENCH_DB_URL``).

Lines that cannot run here are skipped by the patterns in ``SKIP`` (placeholders such as
``<head-ip>``, the set-up commands CI itself runs, commands that serve forever); each has its
reason. Blocks without a language are sample output and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Shell lines not run here, and why.
SKIP: dict[str, str] = {
    r"^pip install": "the install step itself (CI and a fresh-venv check run it)",
    r"python -m pytest": "the test suite itself",
    r"^ray start": "starts a Ray cluster node (tests/cluster/test_two_node.py does)",
    r"<[a-z-]+>|user@host|10\.0\.0\.1": "a placeholder the reader fills in",
    r"^bench (dashboard|serve)\b": "serves until stopped (tests/dashboard start it for real)",
    r"^optuna-dashboard": "a separate tool",
    r"^(docker|kubectl|helm) ": "needs a container engine or cluster",
    r"^bench data fetch": "downloads a data set (no network in tests; tests build small files)",
}

FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) == lang:
                found.append(Block(doc, text.count("\n", 0, m.start()) + 1, lang, m.group(2)))
    return found


def skip_reason(line: str) -> str | None:
    for pattern, reason in SKIP.items():
        if re.search(pattern, line):
            return reason
    return None


def shell_lines(block: Block) -> list[str]:
    """The commands of a bash block: comments stripped, continuation lines joined."""
    out: list[str] = []
    pending = ""
    for raw in block.text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        code = _strip_comment(line).strip()
        if code:
            out.append(code)
    return out


def _strip_comment(line: str) -> str:
    """``cmd --x  # note`` -> ``cmd --x`` (a ``#`` inside quotes or a word stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A scratch folder with ``examples/`` linked in and its own SQLite database."""
    work = tmp_path_factory.mktemp("docs")
    (work / "examples").symlink_to(ROOT / "examples")
    env = dict(os.environ)
    env["BENCH_DB_URL"] = f"sqlite:///{work / 'bench.db'}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return work, env


def _run(cmd: list[str] | str, work: Path, env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, cwd=work, env=env, shell=isinstance(cmd, str),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{what} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )


@pytest.mark.parametrize("block", blocks("yaml"), ids=lambda b: b.where)
def test_yaml_block_is_a_valid_spec(block: Block) -> None:
    from bench_service.sweep import parse_spec, plan_sweep
    from bench_service.sweep.yaml_io import parse_yaml

    plan = plan_sweep(parse_spec(parse_yaml(block.text, block.where)))
    assert plan.expected_trials > 0


@pytest.mark.slow
def test_shell_and_python_blocks_run_as_written(
    scratch: tuple[Path, dict[str, str]],
) -> None:
    """Every runnable bash line, then every python block, in document order."""
    work, env = scratch
    ran = 0
    for block in blocks("bash"):
        for line in shell_lines(block):
            if skip_reason(line):
                continue
            _run(line, work, env, f"{block.where}: {line}")
            ran += 1
    assert ran >= 5, "expected the README's bench commands to run"
    for block in blocks("python"):
        _run([sys.executable, "-c", block.text], work, env, f"{block.where} (python)")


def test_readme_counts_match_the_examples() -> None:
    """The trial counts the README quotes for the examples are what the planner plans."""
    from bench_service.sweep import load_spec, plan_sweep

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for m in re.finditer(r"`examples/(\w+)\.yaml` \(([\d,]+) trials", readme):
        plan = plan_sweep(load_spec(ROOT / "examples" / f"{m.group(1)}.yaml"))
        assert plan.expected_trials == int(m.group(2).replace(",", "")), m.group(0)
