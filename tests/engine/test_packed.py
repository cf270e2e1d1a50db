"""Packed runner: a pack of K members records exactly what K separate ``run_trial``s record.

Everything runs in float64 (``torch.set_default_dtype``, which both runners follow), where the
packed step is the same arithmetic as the unpacked one up to the order of a few reductions:
curves agree to a relative 1e-9 (measured: ~4e-16). GroupNorm is the exception: vmap's
batching rule for it reduces in another order (1e-11 after the first step) and a GroupNorm
over 2 channels per group amplifies that over the first steps, so it gets 1e-4.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from bench_service.engine import OPTIMIZERS, REGULARIZERS, TrialPruned, run_trial
from bench_service.engine.packed import PACKABLE_REGULARIZERS, packability, run_packed
from bench_service.engine.packed_optim import PACKED_RULES
from bench_service.engine.records import MetricPoint, TrialResult

RTOL = 1e-9
GROUPNORM_RTOL = 1e-4
#: Rosenbrock builds its point in float32 whatever the default dtype: float32 ulps, grown
#: over 12 steps along its curved valley to ~1e-5.
FLOAT32_RTOL = 1e-4


@pytest.fixture(autouse=True)
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def cfg(opt: str = "adam", seed: int = 0, *, reg: str = "none", rp: dict[str, Any] | None = None,
        sched: str = "constant", sp: dict[str, Any] | None = None,
        op: dict[str, Any] | None = None, workload: Any = None, steps: int = 12,
        **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "workload": workload or {"name": "mlp_digits", "params": {"hidden": 16}},
        "optimizer": {"name": opt, "params": op or {}},
        "regularizer": {"name": reg, "params": rp or {}},
        "scheduler": {"name": sched, "params": sp or {}},
        "seed": seed, "budget": {"steps": steps}, "log_every": 4,
    }
    d.update(kw)
    return d


def assert_same(packed: TrialResult, alone: TrialResult, rtol: float = RTOL) -> None:
    assert packed.status == alone.status, (packed.status, alone.status, packed.error)
    assert packed.diverged_step == alone.diverged_step
    assert (packed.steps, packed.epochs) == (alone.steps, alone.epochs)
    assert packed.step_to_target == alone.step_to_target
    where = [(p.name, p.step, p.epoch, p.scope) for p in packed.metrics]
    assert where == [(p.name, p.step, p.epoch, p.scope) for p in alone.metrics]
    for p, q in zip(packed.metrics, alone.metrics, strict=True):
        assert p.value == pytest.approx(q.value, rel=rtol, abs=1e-12), (p, q)
    assert set(packed.final) == set(alone.final)


def compare(configs: list[dict[str, Any]], rtol: float = RTOL) -> list[TrialResult]:
    packed = run_packed(configs)
    for p, c in zip(packed, configs, strict=True):
        assert p.extra["pack"] == {"members": len(configs)}, p.extra["pack"]
        assert_same(p, run_trial(c), rtol)
    return packed


def test_every_optimizer_is_packable_or_says_why() -> None:
    for name in OPTIMIZERS.builtin_names():
        reason = packability(cfg(name))
        assert (reason is None) == (name in PACKED_RULES), (name, reason)


@pytest.mark.parametrize("opt", sorted(PACKED_RULES))
def test_optimizer_pack_equals_separate_runs(opt: str) -> None:
    """Different seeds, learning rates, hyperparameters and schedules in one pack."""
    space = OPTIMIZERS.get(opt).hyperparams
    lr = float(space.resolve({}, "p")["lr"])
    decays = {p.name: 0.8 for p in space if p.name in ("momentum", "beta1", "alpha", "rho")}
    compare([
        cfg(opt, 0),
        cfg(opt, 1, op={"lr": lr * 0.5, **decays}, sched="cosine", sp={"interval": "step"}),
        cfg(opt, 2, op={"lr": lr * 2}, sched="step", sp={"step_size": 1, "gamma": 0.5}),
    ])


@pytest.mark.parametrize("reg", REGULARIZERS.builtin_names())
def test_regularizer_pack_equals_separate_runs(reg: str) -> None:
    if reg not in PACKABLE_REGULARIZERS:
        reason = packability(cfg(reg=reg))
        assert reason is not None and reg in reason
        return
    entry = REGULARIZERS.get(reg)
    strengths = [None, None]
    if any(p.name == "strength" for p in entry.hyperparams):
        default = float(entry.hyperparams.resolve({}, "p")["strength"])
        strengths = [None, {"strength": default * 1.5}]
    compare([cfg("adam", 0, reg=reg, rp=strengths[0]), cfg("adam", 1, reg=reg, rp=strengths[1])],
            GROUPNORM_RTOL if reg == "groupnorm" else RTOL)


def test_dropout_masks_are_independent_per_member() -> None:
    """Two members with the same seed get the same masks; another seed gets others."""
    same = run_packed([cfg(reg="dropout", seed=3), cfg(reg="dropout", seed=3),
                       cfg(reg="dropout", seed=4)])
    losses = [r.curve("train_loss", "step") for r in same]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_diverging_member_is_frozen_at_its_step_the_others_go_on() -> None:
    results = compare([
        cfg("sgd", 0, op={"lr": 0.1}, steps=30),
        cfg("sgd", 1, op={"lr": 1e4}, steps=30),
        cfg("sgd", 2, op={"lr": 0.05}, steps=30, sched="exponential"),
    ])
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert results[1].diverged_step is not None and results[1].steps < 30


def test_pruned_member_stops_with_its_record_the_others_go_on() -> None:
    def pruner(after: int) -> Any:
        def callback(points: list[MetricPoint]) -> None:
            if any(p.step >= after for p in points):
                raise TrialPruned()
        return callback

    configs = [cfg("adam", 0, steps=30), cfg("adam", 1, steps=30), cfg("adam", 2, steps=30)]
    callbacks = [None, pruner(8), pruner(23)]
    packed = run_packed(configs, callbacks)
    alone = [run_trial(c, cb) for c, cb in zip(configs, callbacks, strict=True)]
    for p, a in zip(packed, alone, strict=True):
        assert_same(p, a)
    assert [r.status for r in packed] == ["completed", "pruned", "pruned"]
    assert packed[1].steps == 8


def test_streamed_batches_are_the_record() -> None:
    seen: list[list[MetricPoint]] = [[], []]
    results = run_packed([cfg(seed=0), cfg(seed=1)], [seen[0].extend, seen[1].extend])
    for got, r in zip(seen, results, strict=True):
        assert got == r.metrics


@pytest.mark.parametrize("workload", [
    "logreg_digits", {"name": "rosenbrock", "params": {"steps_per_epoch": 6}}, "linreg",
    "quadratic", {"name": "cnn_digits", "params": {"channels": 8}},
])
def test_other_workloads_pack(workload: Any) -> None:
    """Models without dropout, one with step extras (rosenbrock), a CNN."""
    rtol = FLOAT32_RTOL if "rosenbrock" in str(workload) else RTOL
    compare([cfg("momentum", 0, workload=workload),
             cfg("momentum", 1, workload=workload, op={"lr": 0.003})], rtol)


def test_unpackable_members_run_alone_with_their_reason() -> None:
    configs = [cfg("adam", 0), cfg("adam", 1, reg="batchnorm"), cfg("sgd", 2),
               cfg("adam", 3, sched="plateau"), {"workload": "nope", "optimizer": "adam"}]
    results = run_packed(configs)
    assert results[0].extra["pack"] == {"members": 1}
    assert "batchnorm" in results[1].extra["pack"]["unpacked"]
    assert "differs" in results[2].extra["pack"]["unpacked"]
    assert "plateau" in results[3].extra["pack"]["unpacked"]
    assert results[4].status == "failed"
    for r, c in zip(results[1:4], configs[1:4], strict=True):
        assert_same(r, run_trial(c))
