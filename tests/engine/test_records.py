"""Metric points and results: what the runner hands to the cluster layer."""

from __future__ import annotations

import copy
import math
import pickle

from bench_service.engine.records import MetricPoint


def test_metric_points_pickle_to_equal_points_with_every_field() -> None:
    points = [
        MetricPoint("train_loss", 0.25, step=10, epoch=1, wall_time=0.5),
        MetricPoint("val_accuracy", 0.9, step=20, epoch=2, wall_time=1.5, scope="epoch"),
        MetricPoint("train_loss", math.inf, step=30, epoch=3, wall_time=2.0),
    ]
    for back in (pickle.loads(pickle.dumps(points, protocol=5)), copy.deepcopy(points)):
        assert back == points
        assert [p.scope for p in back] == ["step", "epoch", "step"]
        assert all(type(p) is MetricPoint for p in back)


def test_record_types_spell_the_vocabulary() -> None:
    """The engine's status and scope literals are the vocabulary's, not a local spelling."""
    from typing import get_args

    from bench_service.engine.records import Scope, Status
    from bench_service.vocab import SCOPES, TRIAL_ENDED

    assert set(get_args(Status)) == set(TRIAL_ENDED)
    assert get_args(Scope) == SCOPES
