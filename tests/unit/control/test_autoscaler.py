"""NVCF's scaling decision (reference/compute.md 3.3) with NVCF's own unit-test examples, and the store."""

from __future__ import annotations

import pytest

from fnplane.control.autoscaler import (
    AutoscalerSettings,
    ScalingPolicy,
    Stickiness,
    WorkerLoadStore,
    decide_scaling,
    distribute,
)
from fnplane.control.db.repositories.deployments import GpuSpecRecord
from fnplane.shared.models.compute import VersionLoad, WorkerMetrics


@pytest.mark.parametrize(
    ("current", "utilisation", "invoked", "expected"),
    [
        (10, 95.0, True, 12),  # up: ceil(10 x 1.2)
        (10, 25.0, True, 8),  # down: floor(10 x 0.8)
        (1, 90.0, True, 2),  # up from one: ceil(1.2)
        (2, 5.0, True, 1),  # down, recently invoked: never below one
        (2, 5.0, False, 0),  # idle and 5 %: the only path to zero
        (4, 50.0, True, 4),  # between the thresholds: stay
        (3, 70.0, True, 3),  # comparisons are strict
        (3, 30.0, True, 3),
    ],
)
def test_nvcf_examples(current: int, utilisation: float, invoked: bool, expected: int) -> None:
    assert decide_scaling(current, [utilisation], recently_invoked=invoked) == expected


def test_idle_but_busy_does_not_go_to_zero() -> None:
    assert decide_scaling(2, [80.0], recently_invoked=False) == 3


def test_no_samples_keeps_at_least_one_while_invoked() -> None:
    assert decide_scaling(0, [], recently_invoked=True) == 1
    assert decide_scaling(0, [], recently_invoked=False) == 0


def test_stale_zero_guard_waits_for_new_workers() -> None:
    assert decide_scaling(0, [], recently_invoked=True, last_requested=2) is None


def test_only_the_newest_sample_counts_without_stickiness() -> None:
    assert decide_scaling(5, [95.0, 95.0, 50.0], recently_invoked=True) == 5


def test_stickiness_needs_enough_breaching_samples() -> None:
    policy = ScalingPolicy(scale_up_stickiness=Stickiness(window=3, required=2))
    assert decide_scaling(5, [10.0, 50.0, 95.0], recently_invoked=True, policy=policy) == 5
    assert decide_scaling(5, [95.0, 50.0, 95.0], recently_invoked=True, policy=policy) == 6


def test_custom_configuration_from_the_patch_body() -> None:
    raw = {
        "scaleUpDetails": {
            "factor": 2.0,
            "threshold": 50,
            "stickiness": {"size": "PT3M", "threshold": "PT2M"},
        },
        "scaleDownDetails": {"factor": 0.5, "threshold": 10},
    }
    policy = ScalingPolicy.from_configuration(raw, sample_step_s=60.0)
    assert policy.scale_up_stickiness == Stickiness(3, 2)
    assert decide_scaling(4, [60.0, 20.0, 60.0], recently_invoked=True, policy=policy) == 8
    assert decide_scaling(4, [20.0], recently_invoked=True, policy=policy) == 4
    assert decide_scaling(4, [5.0], recently_invoked=True, policy=policy) == 2


def test_decay_weights_recent_samples_for_scale_to_zero() -> None:
    # old high load, recent idle: with decay the recent idleness dominates
    samples = [90.0, 90.0, 0.0, 0.0, 0.0]
    assert decide_scaling(1, samples, recently_invoked=False, policy=ScalingPolicy()) == 1
    assert decide_scaling(1, samples, recently_invoked=False, policy=ScalingPolicy(decay_factor=1.0)) == 0


def _spec(spec_id: str, low: int, high: int, order: int) -> GpuSpecRecord:
    return GpuSpecRecord(
        spec_id,
        "d",
        "L40S",
        "LOCAL.GPU.L40S_1x",
        None,
        low,
        high,
        1,
        low,
        None,
        None,
        None,
        None,
        None,
        None,
        order,
    )


def test_distribute_clamps_to_the_sum_of_bounds_and_fills_in_order() -> None:
    specs = [_spec("b", 1, 3, 2), _spec("a", 0, 2, 1)]
    assert distribute(specs, 0) == {"a": 0, "b": 1}
    assert distribute(specs, 3) == {"a": 2, "b": 1}
    assert distribute(specs, 4) == {"a": 2, "b": 2}
    assert distribute(specs, 99) == {"a": 2, "b": 3}


def test_store_turns_reports_into_samples_and_remembers_invocations() -> None:
    now = [1000.0]
    store = WorkerLoadStore(
        AutoscalerSettings(sample_step_s=10.0, lookback_s=60.0, idle_window_s=100.0), lambda: now[0]
    )
    store.record(
        WorkerMetrics(
            intervalSeconds=5,
            versions=[VersionLoad(functionVersionId="v", instances=2, busyFraction=0.9, invoked=True)],
        )
    )
    now[0] += 15
    store.record(
        WorkerMetrics(
            intervalSeconds=5,
            versions=[VersionLoad(functionVersionId="v", instances=2, busyFraction=0.1, invoked=False)],
        )
    )
    assert store.samples("v") == pytest.approx([90.0, 10.0])
    assert store.recently_invoked("v")
    now[0] += 200
    assert not store.recently_invoked("v")
    assert store.samples("v") == []
