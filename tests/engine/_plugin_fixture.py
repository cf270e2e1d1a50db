"""An *installed* third-party plug-in package, written into a directory for the loader tests.

``install_plugin(site)`` writes what ``pip install`` leaves in a site directory: the module
``bench_test_plugin.py`` and ``bench_test_plugin-0.1.dist-info`` with ``METADATA`` and
``entry_points.txt``. With ``site`` on ``sys.path`` (or ``PYTHONPATH``),
``importlib.metadata`` finds its entry points exactly as those of a real installed package.

Its entry points, in this order (a broken one first, so that the healthy ones after it prove
the loader goes on):

* ``bench_service.optimizers``: ``broken`` names a missing attribute; ``plugin_sgd`` is one
  entry; ``plugin_pair`` a function returning a list of two; ``plugin_adam_clash`` a second
  ``adam`` (taken by the built-in one, so skipped);
* ``bench_service.workloads``: ``plugin_bowl``, a ``Workload`` subclass.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

DISTRIBUTION = "bench-test-plugin"
MODULE = "bench_test_plugin"
#: Names the healthy entry points register, per axis.
GOOD = {
    "optimizers": ("plugin_sgd", "plugin_pair_a", "plugin_pair_b"),
    "workloads": ("plugin_bowl",),
}
BROKEN = f"broken = {MODULE}:MISSING_ENTRY"

_MODULE_SOURCE = '''
"""A third-party bench_service plug-in (written by tests/engine/_plugin_fixture.py)."""

import torch
from torch import nn

from bench_service.engine.hparams import HyperParam, ParamSpace
from bench_service.engine.optimizers import OptimizerEntry
from bench_service.engine.workloads import ArchOptions, Dataset, Target, Workload


def _sgd(name: str) -> OptimizerEntry:
    return OptimizerEntry(
        name, "Plain SGD from a plug-in.",
        ParamSpace((HyperParam("lr", 0.1, low=1e-3, high=1.0, log=True, minimum=0.0,
                               exclusive_minimum=True),)),
        lambda params, hp: torch.optim.SGD(params, lr=hp["lr"]),
        update_rule="w <- w - lr g",
    )


PLUGIN_SGD = _sgd("plugin_sgd")
ADAM_AGAIN = _sgd("adam")


def pair() -> list[OptimizerEntry]:
    return [_sgd("plugin_pair_a"), _sgd("plugin_pair_b")]


class _Point(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.full((3,), 2.0))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return (self.x * self.x).sum().expand(rows.shape[0])


class Bowl(Workload):
    """f(x) = |x|^2 from x = (2, 2, 2)."""

    name = "plugin_bowl"
    description = "A 3-d bowl from a plug-in."
    target = Target("val_loss", 0.01, "min")
    default_batch_size = 4
    default_epochs = 2
    seeded_init = False

    def make_data(self) -> Dataset:
        return Dataset(torch.zeros(8, 1), torch.zeros(8), torch.zeros(1, 1), torch.zeros(1))

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        return _Point()

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output.mean()
'''

_ENTRY_POINTS = f"""
[bench_service.optimizers]
{BROKEN}
plugin_sgd = {MODULE}:PLUGIN_SGD
plugin_pair = {MODULE}:pair
plugin_adam_clash = {MODULE}:ADAM_AGAIN

[bench_service.workloads]
plugin_bowl = {MODULE}:Bowl
"""


def install_plugin(site: Path) -> Path:
    """Write the installed package into ``site`` (created if needed) and return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{MODULE}.py").write_text(textwrap.dedent(_MODULE_SOURCE).lstrip())
    info = site / f"{MODULE}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(_ENTRY_POINTS.lstrip())
    (info / "RECORD").write_text("")
    return site
