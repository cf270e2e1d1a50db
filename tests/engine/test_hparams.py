"""Hyperparameter validation: declared bounds, and what every number must be storable as."""

from __future__ import annotations

import math

import pytest

from bench_service.engine.errors import ConfigError
from bench_service.engine.hparams import (
    FLOAT32_MAX,
    FLOAT32_TINY,
    INT64_MAX,
    HyperParam,
    ParamSpace,
    shown,
)

FLOAT = HyperParam("x", 1.0)
INT = HyperParam("n", 1, kind="int", minimum=1, maximum=1000)


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, 1e39, -1e39, 1e308, 10**400, 1e-39, -1e-45],
)
def test_a_float_parameter_must_fit_float32(value: float) -> None:
    with pytest.raises(ConfigError) as err:
        FLOAT.validate(value, "optimizer.params")
    assert err.value.field == "optimizer.params.x"
    assert len(err.value.message) < 120


@pytest.mark.parametrize("value", [0.0, FLOAT32_MAX, -FLOAT32_MAX, FLOAT32_TINY, 3, 1e-30])
def test_float32_representable_values_pass(value: float) -> None:
    assert FLOAT.validate(value, "") == float(value)


def test_int_parameters_fit_int64_and_their_bounds() -> None:
    unbounded = HyperParam("n", 1, kind="int")
    assert unbounded.validate(INT64_MAX, "") == INT64_MAX
    for value in (INT64_MAX + 1, -(2**63) - 1, 10**30):
        with pytest.raises(ConfigError, match="64 bits"):
            unbounded.validate(value, "")
    with pytest.raises(ConfigError, match=r"must be <= 1000, got 1e30 \(an integer\)"):
        INT.validate(10**30, "")  # the declared bound is named first, the value shortened
    assert INT.validate(7.0, "") == 7
    with pytest.raises(ConfigError, match="integer"):
        INT.validate(7.5, "")


def test_messages_echo_a_bounded_slice_of_the_input() -> None:
    assert shown(10**400) == "1e400 (an integer)"
    assert shown(-(2**63)) == "-9.223e18 (an integer)"
    assert len(shown("y" * 10_000)) == 60
    with pytest.raises(ConfigError) as err:
        FLOAT.validate("z" * 10_000, "p")
    assert len(str(err.value)) < 120
    space = ParamSpace((FLOAT,))
    with pytest.raises(ConfigError) as err:
        space.resolve({"k" * 10_000: 1}, "optimizer.params")
    assert len(str(err.value)) < 200
