"""Contract tests run against every registered workload, then checks of specific ones.

Parametrised over ``WORKLOADS.builtin_names()`` so that a new workload is held to the interface
the runner relies on (cached deterministic data, seeded models, a loss that training lowers,
finite validation metrics) the moment it is registered.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from bench_service.engine.errors import ConfigError, IncompatibleError
from bench_service.engine.workloads import (
    NORMS,
    WORKLOADS,
    ArchOptions,
    Workload,
    build_workload,
)
from bench_service.engine.workloads.char_lm import VOCAB, generate_corpus
from bench_service.engine.workloads.quadratic import NoisyQuadratic
from bench_service.vocab import metric_mode

NAMES = WORKLOADS.builtin_names()


def _arch_cases() -> list[tuple[str, ArchOptions]]:
    cases = []
    for name in NAMES:
        cls = WORKLOADS.get(name)
        cases += [(name, ArchOptions(norm=norm)) for norm in cls.supported_norms]
        if cls.supports_dropout:
            cases.append((name, ArchOptions(dropout=0.3)))
    return cases


def _unsupported_norms() -> list[tuple[str, str]]:
    return [
        (name, norm) for name in NAMES for norm in NORMS
        if norm not in WORKLOADS.get(name).supported_norms
    ]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- the contract, for every workload -------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_class_is_documented(name: str) -> None:
    cls = WORKLOADS.get(name)
    assert cls.__doc__ and cls.description
    assert cls.target.mode in ("min", "max")
    assert math.isfinite(cls.target.value)
    assert cls.default_batch_size >= 1 and cls.default_epochs >= 1
    assert set(cls.supported_norms) <= set(NORMS)
    assert f"{cls.target.value:g}" in cls.describe()
    assert cls.target.mode == metric_mode(cls.target.metric)  # the vocabulary's direction


@pytest.mark.parametrize("name", NAMES)
def test_sizes_are_bounded_and_defaults_fit(name: str) -> None:
    """Every integer (size) parameter declares a maximum, and the defaults fit the budget."""
    cls = WORKLOADS.get(name)
    for hp in cls.hyperparams:
        if hp.kind == "int":
            assert hp.maximum is not None, hp.name
    assert build_workload(name).estimated_bytes() < cls.max_bytes / 100


@pytest.mark.parametrize("name", NAMES)
def test_an_absurd_size_is_refused_before_allocating(name: str) -> None:
    ints = [hp for hp in WORKLOADS.get(name).hyperparams if hp.kind == "int"]
    for hp in ints:
        with pytest.raises(ConfigError) as err:
            build_workload(name, {hp.name: 10**30})
        assert err.value.field == f"workload.params.{hp.name}"
        assert "1e30" in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_cached_and_consistent(name: str) -> None:
    wl = build_workload(name)
    data = wl.data()
    assert wl.data() is data
    assert build_workload(name).data() is data  # the cache is per (name, params), not object
    again = wl.make_data()
    for field in ("x_train", "y_train", "x_val", "y_val"):
        ours, theirs = getattr(data, field), getattr(again, field)
        assert ours.device.type == "cpu"
        assert torch.equal(ours, theirs), field
    assert data.x_train.shape[0] == data.y_train.shape[0] == data.n_train >= 2
    assert data.x_val.shape[0] == data.y_val.shape[0] >= 1
    assert data.x_train.shape[1:] == data.x_val.shape[1:]
    assert data.y_train.shape[1:] == data.y_val.shape[1:]


def test_the_data_cache_keeps_a_float64_run_from_a_float32_one() -> None:
    """The quadratic draws its data in the default dtype: data built under float64 (the packed
    equivalence tests) must not be what a later float32 run of the same process gets."""
    params = {"dim": 5}
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = build_workload("quadratic", params).data()
    finally:
        torch.set_default_dtype(old)
    narrow = build_workload("quadratic", params).data()
    assert wide.x_train.dtype == torch.float64 and narrow.x_train.dtype == torch.float32
    assert torch.equal(narrow.x_train, build_workload("quadratic", params).make_data().x_train)


@pytest.mark.parametrize("name", NAMES)
def test_model_output_fits_loss(name: str) -> None:
    wl = build_workload(name)
    d = wl.data()
    model = wl.init_model(0, ArchOptions())
    loss = wl.loss_fn(model(d.x_train[:5]), d.y_train[:5])
    assert loss.shape == () and torch.isfinite(loss)
    assert wl.regularized_parameters(model)


@pytest.mark.parametrize("name", NAMES)
def test_init_depends_on_seed_only(name: str) -> None:
    wl = build_workload(name)
    rng_before = torch.get_rng_state()
    a, b = _state(wl.init_model(7, ArchOptions())), _state(wl.init_model(7, ArchOptions()))
    c = _state(wl.init_model(8, ArchOptions()))
    assert torch.equal(torch.get_rng_state(), rng_before), "init drew from the global RNG"
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    same = all(torch.equal(a[k], c[k]) for k in a)
    # A workload whose start is fixed by design says so (``seeded_init = False``).
    assert same != wl.seeded_init


@pytest.mark.parametrize("name", NAMES)
def test_ten_adam_steps_lower_the_loss_of_a_batch(name: str) -> None:
    """The loss is differentiable in every parameter that matters and training lowers it:
    ten Adam steps on one small batch (train mode, the same dropout masks before and after).
    One batch keeps the DeepOBS image nets affordable (30 steps of ResNet-18 at batch 64
    took over 3 minutes on 2 cores) and makes the drop certain rather than a race against
    mini-batch noise."""
    wl = build_workload(name)
    d = wl.data()
    model = wl.init_model(0, ArchOptions())
    bs = min(wl.default_batch_size, 8)
    xb, yb = d.x_train[:bs], d.y_train[:bs]

    def loss() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            return float(wl.loss_fn(model.train()(xb), yb))

    before = loss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        torch.manual_seed(1)
        opt.zero_grad()
        wl.loss_fn(model.train()(xb), yb).backward()
        opt.step()
    after = loss()
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_is_finite(name: str) -> None:
    wl = build_workload(name)
    d = wl.data()
    model = wl.init_model(0, ArchOptions()).eval()
    metrics = wl.evaluate(model, d.x_val, d.y_val)
    assert math.isfinite(metrics["val_loss"])
    assert wl.target.metric in metrics
    if wl.classification:
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
    assert wl.evaluate(model, d.x_val, d.y_val) == metrics  # eval mode is deterministic
    assert all(math.isfinite(v) for v in wl.step_extras(model).values())


@pytest.mark.parametrize(("name", "arch"), _arch_cases(), ids=str)
def test_every_supported_arch_option_builds_and_runs(name: str, arch: ArchOptions) -> None:
    wl = build_workload(name)
    wl.check_arch(arch)
    d = wl.data()
    model = wl.init_model(0, arch).train()
    loss = wl.loss_fn(model(d.x_train[:8]), d.y_train[:8])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    assert math.isfinite(wl.evaluate(model, d.x_val, d.y_val)["val_loss"])


@pytest.mark.parametrize(("name", "norm"), _unsupported_norms())
def test_unsupported_norms_are_refused(name: str, norm: str) -> None:
    wl = build_workload(name)
    with pytest.raises(IncompatibleError, match=norm):
        wl.init_model(0, ArchOptions(norm=norm))


def test_sizes_within_each_bound_but_too_big_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"needs about 7.45e\+05 GiB.*dim or n_train") as err:
        build_workload("quadratic", {"dim": 10**7, "n_train": 10**7})
    assert err.value.field == "workload.params"
    with pytest.raises(ConfigError, match="linreg with these parameters needs about"):
        build_workload("linreg", {"dim": 10**6, "n_train": 10**7})
    with pytest.raises(ConfigError, match="mlp_digits"):
        build_workload("mlp_digits", {"hidden": 2**16})
    with pytest.raises(ConfigError, match="char_lm"):
        build_workload("char_lm", {"d_model": 4096, "n_layer": 64})


class _ForgetsTheArchCheck(NoisyQuadratic):
    """A subclass whose ``init_model`` never calls ``check_arch``."""

    name = "forgets_arch_check"

    def init_model(self, seed: int, arch: ArchOptions) -> nn.Module:
        return torch.nn.Linear(1, 1)


def test_init_model_checks_arch_even_when_a_subclass_forgets() -> None:
    wl = _ForgetsTheArchCheck()
    with pytest.raises(IncompatibleError, match="batchnorm"):
        wl.init_model(0, ArchOptions(norm="batchnorm"))
    with pytest.raises(IncompatibleError, match="dropout"):
        wl.init_model(seed=0, arch=ArchOptions(dropout=0.5))
    assert isinstance(wl.init_model(0, ArchOptions()), nn.Linear)


# --- quadratic ------------------------------------------------------------------------------
def test_batchnorm_on_the_quadratic_is_incompatible() -> None:
    with pytest.raises(IncompatibleError, match=r"'quadratic' cannot use batchnorm \(supports: "
                       r"none\)") as err:
        build_workload("quadratic").check_arch(ArchOptions(norm="batchnorm"))
    assert err.value.field == "regularizer"
    with pytest.raises(IncompatibleError, match="dropout"):
        build_workload("quadratic").check_arch(ArchOptions(dropout=0.5))


def test_quadratic_spectrum_and_true_validation_loss() -> None:
    wl = NoisyQuadratic(dim=4, condition=1000.0, max_curvature=2.0)
    a = wl.curvatures()
    assert torch.allclose(a, torch.tensor([2.0, 0.2, 0.02, 0.002]))
    d = wl.data()
    assert torch.equal(d.x_val, torch.zeros(1, 4))
    model = wl.init_model(0, ArchOptions())
    assert wl.evaluate(model, d.x_val, d.y_val)["val_loss"] == pytest.approx(0.5 * a.sum().item())
    assert d.x_train.std().item() == pytest.approx(0.1, rel=0.1)


def _four_x_squared() -> tuple[Workload, nn.Module]:
    wl = build_workload("quadratic", {
        "dim": 1, "max_curvature": 8.0, "condition": 1.0, "noise": 0.0, "init_scale": 2.0,
    })
    return wl, wl.init_model(0, ArchOptions())


def _gd_losses(lr: float, steps: int) -> tuple[list[float], nn.Module]:
    wl, model = _four_x_squared()
    d = wl.data()
    losses = []
    for _ in range(steps):
        loss = wl.loss_fn(model(d.x_train[:16]), d.y_train[:16])
        losses.append(loss.item())
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                assert p.grad is not None
                p.sub_(lr * p.grad)
    return losses, model


def test_four_x_squared_is_exact() -> None:
    wl, model = _four_x_squared()
    d = wl.data()
    assert torch.equal(d.x_train, torch.zeros_like(d.x_train))
    assert wl.loss_fn(model(d.x_train), d.y_train).item() == 16.0  # 4 * 2²
    assert wl.evaluate(model, d.x_val, d.y_val)["val_loss"] == 16.0


def test_four_x_squared_diverges_at_lr_0_3() -> None:
    losses, _ = _gd_losses(0.3, 10)  # x <- (1 - 2.4) x
    assert all(b > a for a, b in itertools.pairwise(losses))
    assert losses[-1] == pytest.approx(16.0 * 1.4 ** 18, rel=1e-4)


def test_four_x_squared_reaches_zero_in_one_step_at_lr_0_125() -> None:
    losses, model = _gd_losses(0.125, 2)  # x <- (1 - 1) x
    assert losses == [16.0, 0.0]
    assert model.get_parameter("x").item() == 0.0


# --- rosenbrock -----------------------------------------------------------------------------
def test_rosenbrock_reports_its_trajectory() -> None:
    wl = build_workload("rosenbrock")
    d = wl.data()
    assert d.n_train == 100
    model = wl.init_model(0, ArchOptions())
    assert wl.step_extras(model) == {"param_x": -1.5, "param_y": 2.0}
    assert wl.evaluate(model, d.x_val, d.y_val)["val_loss"] == pytest.approx(12.5)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    wl.loss_fn(model(d.x_train[:1]), d.y_train[:1]).backward()
    opt.step()
    assert wl.step_extras(model) != {"param_x": -1.5, "param_y": 2.0}
    at_min = build_workload("rosenbrock", {"x0": 1.0, "y0": 1.0}).init_model(0, ArchOptions())
    assert wl.evaluate(at_min, d.x_val, d.y_val)["val_loss"] == 0.0


# --- digits ---------------------------------------------------------------------------------
def test_digits_split_ships_with_the_package() -> None:
    d = build_workload("mlp_digits").data()
    assert (d.n_train, d.x_val.shape[0]) == (1437, 360)
    assert d.x_train.shape[1] == 64
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
    assert torch.equal(torch.bincount(d.y_val), torch.full((10,), 36))


def test_groupnorm_needs_a_width_divisible_by_8() -> None:
    with pytest.raises(IncompatibleError, match="multiple of 8"):
        build_workload("mlp_digits", {"hidden": 12}).init_model(0, ArchOptions(norm="groupnorm"))


def _hooked(model: nn.Module, kind: type[nn.Module]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record (input, output) of the first module of type ``kind`` on every forward."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    layer = next(m for m in model.modules() if isinstance(m, kind))
    layer.register_forward_hook(lambda _m, inp, out: seen.append((inp[0], out)))
    return seen


def test_mlp_dropout_zeroes_p_of_hidden_units_and_rescales_survivors() -> None:
    p = 0.4
    wl = build_workload("mlp_digits")
    x = wl.data().x_train[:256]
    model = wl.init_model(0, ArchOptions(dropout=p))
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    seen = _hooked(model, nn.Dropout)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        model.train()
        first, second = model(x), model(x)
        model.eval()
        ev1, ev2 = model(x), model(x)
    inp, out = seen[0]
    active = inp != 0  # ReLU already zeroed the rest
    dropped = (out == 0) & active
    assert dropped.sum() / active.sum() == pytest.approx(p, abs=0.02)
    kept = active & ~dropped
    assert torch.allclose(out[kept], inp[kept] / (1 - p))
    assert not torch.equal(first, second)  # fresh masks every forward
    inp_eval, out_eval = seen[-1]
    assert torch.equal(ev1, ev2) and torch.equal(inp_eval, out_eval)


def test_mlp_batchnorm_uses_batch_stats_in_train_and_running_stats_in_eval() -> None:
    wl = build_workload("mlp_digits")
    x = wl.data().x_train
    model = wl.init_model(0, ArchOptions(norm="batchnorm"))
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    running_mean, running_var = bn.running_mean, bn.running_var
    assert running_mean is not None and running_var is not None
    seen = _hooked(model, nn.BatchNorm1d)
    with torch.no_grad():
        model.train()
        model(x[:64])
        inp, out = seen[-1]
        assert torch.allclose(out.mean(0), torch.zeros(out.shape[1]), atol=1e-5)
        assert torch.allclose(out.var(0, unbiased=False), torch.ones(out.shape[1]), atol=1e-2)
        assert torch.allclose(running_mean, 0.1 * inp.mean(0), atol=1e-6)
        other_batch = model(torch.cat([x[:1], x[64:127]]))[0]
        assert not torch.allclose(model(x[:64])[0], other_batch)  # depends on its batch
        model.eval()
        assert torch.allclose(model(x[:1])[0], model(x[:64])[0], atol=1e-6)
        inp, out = seen[-1]
        expected = (inp - running_mean) / torch.sqrt(running_var + bn.eps)
        assert torch.allclose(out, expected, atol=1e-5)


def test_cnn_layernorm_is_groupnorm_with_one_group() -> None:
    model = build_workload("cnn_digits").init_model(0, ArchOptions(norm="layernorm"))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [m.num_groups for m in norms] == [1, 1]


# --- char_lm --------------------------------------------------------------------------------
def test_corpus_is_pinned_across_versions() -> None:
    text = generate_corpus(2_000)
    assert text.startswith("Farid liked Grace at night but that box built three strange")
    assert text == generate_corpus(2_000)
    assert set(text) <= set(VOCAB)


def test_char_lm_windows_shift_by_one_and_do_not_overlap() -> None:
    wl = build_workload("char_lm")
    d = wl.data()
    assert d.x_train.shape == (2048, 64) and d.x_val.shape == (256, 64)
    assert torch.equal(d.y_train[:, :-1], d.x_train[:, 1:])
    assert torch.equal(d.x_train[1:, 0], d.y_train[:-1, -1])  # consecutive, not overlapping
    assert torch.equal(d.y_val[:, :-1], d.x_val[:, 1:])


def test_char_lm_is_causal_and_reports_perplexity() -> None:
    wl = build_workload("char_lm")
    d = wl.data()
    model = wl.init_model(0, ArchOptions()).eval()
    x = d.x_val[:2].clone()
    with torch.no_grad():
        before = model(x)
        x[:, 40:] = 0
        after = model(x)
    assert torch.allclose(before[:, :40], after[:, :40], atol=1e-5)
    assert not torch.allclose(before[:, 40:], after[:, 40:])
    metrics = wl.evaluate(model, d.x_val, d.y_val)
    assert metrics["val_perplexity"] == pytest.approx(math.exp(metrics["val_loss"]))
    assert metrics["val_loss"] == pytest.approx(math.log(len(VOCAB)), abs=0.2)


def test_char_lm_layernorm_is_native() -> None:
    wl = build_workload("char_lm")
    plain = _state(wl.init_model(3, ArchOptions()))
    with_ln = _state(wl.init_model(3, ArchOptions(norm="layernorm")))
    assert plain.keys() == with_ln.keys()
    assert all(torch.equal(plain[k], with_ln[k]) for k in plain)


def test_char_lm_rejects_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(ConfigError, match="n_head"):
        build_workload("char_lm", {"n_head": 3})
