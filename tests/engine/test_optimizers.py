"""Tests for the optimizer registry and the Yogi / Lion implementations.

Numbers are checked against ``shared/reference/algorithms.md`` and against plain-Python
references of each formula, written independently of the implementations under test. The
registry-wide tests are parametrised over ``OPTIMIZERS.builtin_names()`` so that a new entry is
tested the moment it is registered (and an installed plug-in changes nothing here).
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from bench_service.engine.config import Component
from bench_service.engine.errors import ConfigError, UnknownNameError
from bench_service.engine.optim_lion import Lion
from bench_service.engine.optim_yogi import Yogi
from bench_service.engine.optimizers import OPTIMIZERS, build_optimizer, resolve_optimizer

ALL = OPTIMIZERS.builtin_names()


def _sign(x: float) -> float:
    return (x > 0) - (x < 0)


def _run_half_square(name: str, params: dict[str, float], steps: int = 2) -> list[float]:
    """w = 1.0, loss = w²/2 (so g = w): the trajectory of ``w`` after each step."""
    w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    opt = build_optimizer(Component(name, params), [w])
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * w * w).backward()
        opt.step()
        out.append(w.item())
    return out


def _step_with(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[list[float] | None]
) -> None:
    """Set each parameter's gradient by hand (``None`` entries stay ``None``) and step."""
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else torch.tensor(g, dtype=p.dtype)
    opt.step()


# --- worked numbers of algorithms.md -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("momentum", {"lr": 0.01, "momentum": 0.9}, (0.990000, 0.971100)),
        ("adagrad", {"lr": 0.01}, (0.990000, 0.982965)),
        ("rmsprop", {"lr": 0.01, "alpha": 0.9}, (0.968377, 0.945788)),
        ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.99}, (0.990000, 0.980003)),
    ],
)
def test_worked_numbers(name: str, params: dict[str, float], expected: tuple[float, ...]) -> None:
    assert _run_half_square(name, params) == pytest.approx(expected, abs=1e-6)


# --- Yogi ----------------------------------------------------------------------------------

# Mixed signs and magnitudes; the large gradients of step 1 make g² < s in later steps for the
# first three coordinates (s decreases), the last coordinate's growing gradient keeps g² > s
# (s increases), and a zero gradient leaves s unchanged.
YOGI_GRADS = [
    [3.0, -2.0, 0.5, 0.0, 0.1],
    [-0.1, 0.2, -4.0, 1.0, 0.3],
    [0.05, -0.02, 0.1, -1.5, 0.9],
    [2.0, 0.0, -0.3, 0.2, -2.0],
    [-0.5, 1.0, 0.01, -0.7, 5.0],
    [0.2, -3.0, 0.4, 0.0, -8.0],
]


def _yogi_reference(
    w: list[float], grads: list[list[float]], lr: float, b1: float, b2: float, eps: float,
    init: float,
) -> tuple[list[list[float]], int]:
    """Plain-Python Yogi with m₀ = s₀ = ``init`` (pytorch_optimizer's update, written out);
    returns the trajectory and how often g² < s."""
    m = [init] * len(w)
    s = [init] * len(w)
    w = list(w)
    out, decreases = [], 0
    for t, g in enumerate(grads, start=1):
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            decreases += gi * gi < s[i]
            s[i] = s[i] + (1 - b2) * gi * gi * _sign(gi * gi - s[i])
            m_hat = m[i] / (1 - b1**t)
            s_hat = s[i] / (1 - b2**t)
            w[i] -= lr * m_hat / (math.sqrt(s_hat) + eps)
        out.append(list(w))
    return out, decreases


@pytest.mark.parametrize("init", [1e-6, 0.0, 0.5])
@pytest.mark.parametrize(("betas", "eps"), [((0.9, 0.999), 1e-3), ((0.5, 0.8), 1e-8)])
def test_yogi_matches_hand_computation(
    betas: tuple[float, float], eps: float, init: float
) -> None:
    w0 = [0.5, -1.0, 2.0, 0.0, 1.5]
    expected, decreases = _yogi_reference(w0, YOGI_GRADS, 0.05, *betas, eps, init)
    assert decreases >= 5  # the sign flip (g² < s) is exercised, not only Adam-like growth
    w = torch.tensor(w0, dtype=torch.float64)
    frozen = torch.tensor([7.0], dtype=torch.float64)  # never has a gradient
    opt = Yogi([w, frozen], lr=0.05, betas=betas, eps=eps, initial_accumulator=init)
    for g, want in zip(YOGI_GRADS, expected, strict=True):
        _step_with(opt, [w, frozen], [g, None])
        assert w.tolist() == pytest.approx(want, abs=1e-12, rel=1e-10)
    assert frozen.item() == 7.0
    assert frozen not in opt.state


def test_yogi_first_step_by_hand_for_both_initial_states() -> None:
    """One coordinate, g = 0.01, β = (0.9, 0.999), ε = 1e-3, η = 0.1, from w = 1.

    s₀ = 1e-6 (the default): g² = 1e-4 > s₀, so s₁ = 1e-6 + 1e-3·1e-4 = 1.1e-6 and
    ŝ₁ = 1.1e-6 / 1e-3 = 1.1e-3; m₁ = 0.9e-6 + 1e-3 = 1.0009e-3, m̂₁ = 1.0009e-2; the step is
    0.1 · 1.0009e-2 / (√1.1e-3 + 1e-3). With s₀ = m₀ = 0 it is Adam's: 0.1 · 0.01 / (0.01 + 1e-3).
    """
    expected = {
        1e-6: 1.0 - 0.1 * 1.0009e-2 / (math.sqrt(1.1e-3) + 1e-3),
        0.0: 1.0 - 0.1 * 0.01 / (0.01 + 1e-3),
    }
    for init, want in expected.items():
        w = torch.tensor([1.0], dtype=torch.float64)
        opt = Yogi([w], lr=0.1, betas=(0.9, 0.999), eps=1e-3, initial_accumulator=init)
        _step_with(opt, [w], [[0.01]])
        assert w.item() == pytest.approx(want, rel=1e-12), init
    assert expected[1e-6] > expected[0.0] + 0.06  # s₀ = 1e-6 takes a much shorter step


def test_yogi_default_initial_state_is_the_reference_libraries() -> None:
    w = torch.tensor([1.0, 2.0])
    opt = Yogi([w])
    _step_with(opt, [w], [[0.0, 0.0]])  # a zero gradient leaves both moments at their start
    state = opt.state[w]
    assert torch.equal(state["exp_avg_sq"], torch.full((2,), 1e-6))
    torch.testing.assert_close(state["exp_avg"], torch.full((2,), 0.9e-6))
    assert resolve_optimizer(Component("yogi"))["initial_accumulator"] == 1e-6


def test_yogi_through_registry_matches_class() -> None:
    w_reg = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w_cls = w_reg.clone()
    reg = build_optimizer(
        Component("yogi", {"lr": 0.02, "beta2": 0.9, "eps": 1e-4, "initial_accumulator": 0.1}),
        [w_reg],
    )
    cls = Yogi([w_cls], lr=0.02, betas=(0.9, 0.9), eps=1e-4, initial_accumulator=0.1)
    for g in ([1.0, -3.0], [0.1, 0.5], [-2.0, 0.0]):
        _step_with(reg, [w_reg], [g])
        _step_with(cls, [w_cls], [g])
    torch.testing.assert_close(w_reg, w_cls, rtol=0, atol=0)


def test_yogi_from_zero_state_starts_like_adam() -> None:
    """m₀ = s₀ = 0: the first step is Adam's first step and s₁ = (1-β2) g² exactly."""
    g = [0.3, -2.0, 0.0]
    w_yogi = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    w_adam = w_yogi.clone()
    yogi = Yogi([w_yogi], lr=0.1, betas=(0.9, 0.99), eps=1e-3, initial_accumulator=0.0)
    adam = torch.optim.Adam([w_adam], lr=0.1, betas=(0.9, 0.99), eps=1e-3)
    _step_with(yogi, [w_yogi], [g])
    _step_with(adam, [w_adam], [g])
    torch.testing.assert_close(w_yogi, w_adam)
    s = yogi.state[w_yogi]["exp_avg_sq"]
    torch.testing.assert_close(s, 0.01 * torch.tensor(g, dtype=torch.float64) ** 2)


# --- Lion ----------------------------------------------------------------------------------


def _lion_reference(
    w: list[float], grads: list[list[float]], lr: float, b1: float, b2: float
) -> list[list[float]]:
    m = [0.0] * len(w)
    w = list(w)
    out = []
    for g in grads:
        for i, gi in enumerate(g):
            c = b1 * m[i] + (1 - b1) * gi
            w[i] -= lr * _sign(c)
            m[i] = b2 * m[i] + (1 - b2) * gi
        out.append(list(w))
    return out


def test_lion_matches_hand_computation() -> None:
    # Coordinate 0 flips direction once the momentum outweighs a small opposite gradient.
    grads = [[1.0, -0.5, 0.0], [-0.05, 0.2, 2.0], [-0.2, -3.0, -0.1], [0.3, 0.0, -5.0]]
    w0 = [0.1, 0.2, -0.3]
    expected = _lion_reference(w0, grads, 0.01, 0.9, 0.99)
    w = torch.tensor(w0, dtype=torch.float64)
    frozen = torch.tensor([7.0], dtype=torch.float64)
    opt = Lion([w, frozen], lr=0.01, betas=(0.9, 0.99))
    for g, want in zip(grads, expected, strict=True):
        _step_with(opt, [w, frozen], [g, None])
        assert w.tolist() == pytest.approx(want, abs=1e-12)
    assert frozen.item() == 7.0


# --- Yogi and Lion: validation and state_dict ------------------------------------------------


_BAD = [{"lr": -1e-3}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)}]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(Yogi, kw) for kw in [*_BAD, {"eps": -1e-8}, {"initial_accumulator": -1e-6}]]
    + [(Lion, kw) for kw in _BAD],
)
def test_custom_optimizers_reject_bad_hyperparameters(cls: type, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        cls([torch.zeros(2)], **kwargs)


@pytest.mark.parametrize("cls", [Yogi, Lion])
def test_custom_optimizers_state_dict_round_trip(cls: type) -> None:
    grads = [[0.5, -1.0], [2.0, 0.1], [-0.3, 0.3], [1.0, -2.0], [0.0, 0.4], [-1.0, 1.0]]
    w_a = torch.tensor([1.0, -1.0], dtype=torch.float64)
    opt_a = cls([w_a], lr=0.01)
    for g in grads[:3]:
        _step_with(opt_a, [w_a], [g])
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(opt_a.state_dict()), buffer)
    buffer.seek(0)

    w_b = w_a.clone()
    opt_b = cls([w_b], lr=0.5)  # lr and state come from the checkpoint
    opt_b.load_state_dict(torch.load(buffer))
    assert opt_b.param_groups[0]["lr"] == 0.01
    if cls is Yogi:
        assert opt_b.state[w_b]["step"] == 3
    for g in grads[3:]:
        _step_with(opt_a, [w_a], [g])
        _step_with(opt_b, [w_b], [g])
    torch.testing.assert_close(w_a, w_b, rtol=0, atol=0)


# --- every registered optimizer ------------------------------------------------------------

# Adaptive and sign-based methods move about ``lr`` per coordinate per step, whatever the
# gradient's scale, so the start sits close enough to the minimum for the smallest default
# (Lion, 1e-4 x 200 steps = 0.02) to make real progress.
_START_DISTANCE = 0.03


@pytest.mark.parametrize("name", ALL)
def test_decreases_convex_quadratic(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    curvature = torch.logspace(-1, 0, 10)
    target = torch.randn(10, generator=gen)
    x = (target + _START_DISTANCE * torch.randn(10, generator=gen)).requires_grad_()
    opt = build_optimizer(Component(name), [x])

    def loss() -> torch.Tensor:
        return 0.5 * (curvature * (x - target) ** 2).sum()

    initial = loss().item()
    for _ in range(200):
        opt.zero_grad()
        loss().backward()
        opt.step()
    final = loss().item()
    assert math.isfinite(final)
    assert final < 0.5 * initial, f"{name}: {initial:.3g} -> {final:.3g}"


@pytest.mark.parametrize("name", ALL)
def test_rejects_negative_lr(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_optimizer(Component(name, {"lr": -0.1}))
    assert err.value.field == "optimizer.params.lr"
    with pytest.raises(ConfigError):
        build_optimizer(Component(name, {"lr": -0.1}), [torch.zeros(1, requires_grad=True)])


@pytest.mark.parametrize("lr", [1e308, -1e308, math.inf, math.nan, 10**400, 1e39])
@pytest.mark.parametrize("name", ALL)
def test_rejects_an_lr_no_float32_can_hold(name: str, lr: float) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_optimizer(Component(name, {"lr": lr}))
    assert err.value.field == "optimizer.params.lr"
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("name", ALL)
def test_defaults_validate_against_own_space(name: str) -> None:
    entry = OPTIMIZERS.get(name)
    defaults = resolve_optimizer(Component(name))
    assert defaults == resolve_optimizer(Component(name, defaults))
    for hp in entry.hyperparams.params:
        assert hp.validate(hp.default, "optimizer.params") == hp.default
    assert entry.description and entry.update_rule


@pytest.mark.parametrize("name", ALL)
def test_search_ranges(name: str) -> None:
    space = OPTIMIZERS.get(name).hyperparams
    lr = space.get("lr")
    assert lr.tunable and lr.log
    for hp in space.params:
        if hp.low is None or hp.high is None:  # not tuned by default
            continue
        assert hp.low < hp.high, hp.name
        assert hp.low <= hp.default <= hp.high, hp.name
        assert not hp.log or hp.low > 0, hp.name
        hp.validate(hp.low, name)  # both ends of the search range are valid values
        hp.validate(hp.high, name)


@pytest.mark.parametrize("name", ALL)
def test_no_coupled_weight_decay(name: str) -> None:
    """Weight decay belongs to the regularizer axis; only AdamW's decoupled decay is its own."""
    opt = build_optimizer(Component(name), [torch.zeros(1, requires_grad=True)])
    decay = opt.param_groups[0].get("weight_decay", 0.0)
    # only an optimizer that declares weight_decay as its own hyperparameter decays
    assert decay == resolve_optimizer(Component(name)).get("weight_decay", 0.0)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UnknownNameError) as err:
        resolve_optimizer(Component("adamm"))
    assert "'adam'" in str(err.value)
    assert err.value.field == "optimizer.name"


def test_adamw_without_decay_is_adam() -> None:
    trajectories = []
    for name, params in (("adam", {"lr": 0.05}), ("adamw", {"lr": 0.05, "weight_decay": 0.0})):
        w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        opt = build_optimizer(Component(name, params), [w])
        path = []
        for _ in range(20):
            opt.zero_grad()
            (w**4).sum().backward()
            opt.step()
            path.append(w.detach().clone())
        trajectories.append(torch.stack(path))
    torch.testing.assert_close(trajectories[0], trajectories[1], rtol=0, atol=1e-15)


def test_adamw_decay_is_decoupled() -> None:
    """AdamW's decay is η λ w outside the adaptive step, not rescaled by it as L2 would be."""
    w = _run_half_square("adamw", {"lr": 0.01, "weight_decay": 0.1}, steps=1)[0]
    # w₁ = w₀ (1 - η λ) - η m̂ / (√ŝ + ε) with m̂ = g, ŝ = g², g = w₀ = 1.
    assert w == pytest.approx(1.0 * (1 - 0.01 * 0.1) - 0.01, abs=1e-7)
