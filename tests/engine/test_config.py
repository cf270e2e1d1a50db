"""Trial configs: the golden trial hash, and parsing errors that name their field."""

from __future__ import annotations

import pytest

from bench_service.engine.config import Budget, Component, TrialConfig
from bench_service.engine.errors import ConfigError

#: A literal config and its literal hash. Stored sweeps resume by this hash (a trial whose hash
#: is already stored is not run again): if it changes, every stored sweep silently re-runs
#: from scratch. A new TrialConfig field must keep it (e.g. be left out of ``to_dict`` while
#: it has its default); change the literal only together with a migration of stored hashes.
GOLDEN_CONFIG = {
    "workload": {"name": "quadratic", "params": {"dim": 10, "condition": 100.0}},
    "optimizer": {"name": "adam", "params": {"lr": 0.001, "beta2": 0.99}},
    "scheduler": {"name": "cosine", "params": {"T_max": 0.5}},
    "regularizer": "l2",
    "seed": 3,
    "budget": {"epochs": 5},
    "batch_size": 32,
    "log_every": 5,
    "target": 0.01,
}
GOLDEN_HASH = "a490671bc7de6e493c4fdcc1965cf0ce532d6e178d5d0c9bf4c2105904929468"
#: The smallest config (every default): what most grid cells look like.
MINIMAL_HASH = "6832b9a7847bebe2e8a023d53e18e04f2fcbb03bfe1d264924ae20d0bc1852d5"


def test_golden_trial_hash() -> None:
    assert TrialConfig.from_dict(GOLDEN_CONFIG).config_hash() == GOLDEN_HASH
    minimal = TrialConfig.from_dict({"workload": "linreg", "optimizer": "sgd"})
    assert minimal.config_hash() == MINIMAL_HASH


def test_hash_ignores_spelling_but_not_values() -> None:
    same = TrialConfig(
        workload=Component("quadratic", {"condition": 100.0, "dim": 10}),  # other key order
        optimizer=Component("adam", {"beta2": 0.99, "lr": 0.001}),
        scheduler=Component("cosine", {"T_max": 0.5}),
        regularizer=Component("l2"),
        seed=3, budget=Budget(epochs=5), batch_size=32, log_every=5, target=0.01,
    )
    assert same.config_hash() == GOLDEN_HASH
    assert TrialConfig.from_dict({**GOLDEN_CONFIG, "seed": 4}).config_hash() != GOLDEN_HASH
    other_lr = {**GOLDEN_CONFIG, "optimizer": {"name": "adam", "params": {"lr": 0.002}}}
    assert TrialConfig.from_dict(other_lr).config_hash() != GOLDEN_HASH


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"optimizer": "sgd"}, "workload"),
        ({"workload": "linreg", "optimizer": "sgd", "seeed": 1}, "seeed"),
        ({"workload": "linreg", "optimizer": "sgd", "budget": {"epochs": 0}}, "budget.epochs"),
        ({"workload": "linreg", "optimizer": {"name": ""}}, "optimizer.name"),
        ({"workload": "linreg", "optimizer": "sgd", "device": "tpu"}, "device"),
    ],
)
def test_bad_fields_are_named(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict(data)
    assert err.value.field == field
