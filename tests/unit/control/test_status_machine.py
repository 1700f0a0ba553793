"""The pure status machine and replacement plan (compute.md 1.1)."""

from __future__ import annotations

import pytest

from fnplane.control.services.status import SpecCounts, instance_delta, next_status
from fnplane.shared.models.functions import FunctionStatus as S


def counts(
    min_instances: int = 1,
    *,
    target: int | None = None,
    running: int = 0,
    pending: int = 0,
    desired_live: int | None = None,
    failed: int = 0,
    recent: int | None = None,
) -> SpecCounts:
    return SpecCounts(
        min_instances=min_instances,
        target=min_instances if target is None else target,
        running=running,
        pending=pending,
        desired_live=running + pending if desired_live is None else desired_live,
        failed=failed,
        recent_failures=failed if recent is None else recent,
    )


@pytest.mark.parametrize(
    ("current", "specs", "expected"),
    [
        (S.DEPLOYING, [counts(2, running=1, pending=1)], S.DEPLOYING),
        (S.DEPLOYING, [counts(2, running=2)], S.ACTIVE),
        (S.DEPLOYING, [counts(2, failed=2)], S.ERROR),
        (S.DEPLOYING, [counts(2, pending=1, failed=1)], S.DEPLOYING),
        (S.DEPLOYING, [counts(1, running=1), counts(1, failed=1)], S.ERROR),
        (S.DEPLOYING, [counts(0)], S.ACTIVE),
        (S.ACTIVE, [counts(2, running=1)], S.DEGRADING),
        (S.ACTIVE, [counts(2, pending=1)], S.DEGRADING),
        (S.ACTIVE, [counts(1)], S.DEGRADED),
        (S.ACTIVE, [counts(0), counts(1)], S.ACTIVE),  # zero-scaled stays ACTIVE
        (S.DEGRADED, [counts(0), counts(1)], S.DEGRADED),
        (S.DEGRADING, [counts(2)], S.DEGRADED),
        (S.DEGRADING, [counts(2, running=2)], S.ACTIVE),
        (S.DEGRADED, [counts(2, running=1)], S.DEGRADING),
        (S.DEGRADED, [counts(1, running=1)], S.ACTIVE),
        (S.ERROR, [counts(1, running=1)], S.ERROR),
        (S.INACTIVE, [counts(1, running=1)], S.INACTIVE),
    ],
)
def test_next_status(current: S, specs: list[SpecCounts], expected: S) -> None:
    assert next_status(current, specs) == expected


def test_replacement_plan() -> None:
    # top up to the target
    assert instance_delta(S.ACTIVE, counts(3, running=1), failure_limit=5) == 2
    # release above the target
    assert instance_delta(S.ACTIVE, counts(1, target=1, running=3), failure_limit=5) == -2
    # DEPLOYING: a spec that never ran and already lost an instance waits for its first batch
    assert instance_delta(S.DEPLOYING, counts(2, pending=1, failed=1), failure_limit=5) == 0
    assert instance_delta(S.DEPLOYING, counts(2, running=1, failed=1), failure_limit=5) == 1
    # crash loop: no more replacements once the failure limit is reached within the window
    assert instance_delta(S.ACTIVE, counts(1, failed=5, recent=5), failure_limit=5) == 0
    assert instance_delta(S.ACTIVE, counts(1, failed=5, recent=1), failure_limit=5) == 1
    # ERROR and INACTIVE release everything
    assert instance_delta(S.ERROR, counts(2, running=2), failure_limit=5) == -2
