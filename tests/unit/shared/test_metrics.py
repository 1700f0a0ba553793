"""The worker's half of a histogram (`Distribution`) and the auth-failure reasons."""

from __future__ import annotations

from fnplane.shared import errors
from fnplane.shared.metrics import Distribution, auth_failure_reason


def test_a_distribution_counts_into_buckets_and_starts_over_after_a_take() -> None:
    worker = Distribution((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        worker.observe(value)
    taken = worker.take()
    assert taken == {"counts": [2, 1, 1], "sum": 3.65}
    assert worker.take() is None  # nothing since
    agent = Distribution((0.1, 1.0))
    agent.merge(taken)
    agent.merge(taken)
    assert agent.cumulative() == [("0.1", 4.0), ("1.0", 6.0), ("+Inf", 8.0)]
    assert agent.total == 7.3


def test_a_malformed_report_changes_nothing() -> None:
    agent = Distribution((0.1, 1.0))
    for bad in (
        None,
        [],
        {"counts": [1, 2], "sum": 1},
        {"counts": [1, -1, 0], "sum": 1},
        {"counts": [1, 1, 1]},
    ):
        agent.merge(bad)
    assert agent.counts == [0, 0, 0] and agent.total == 0.0


def test_auth_failures_are_named_by_reason() -> None:
    cases = {
        "Header of type `authorization` was missing": "missing",
        "Unauthorized access: expected 'Authorization: Bearer <token>'": "malformed",
        "Unauthorized access: malformed token": "malformed",
        "Unauthorized access: unknown API key": "unknown",
        "Unauthorized access: token expired": "expired",
        "Unauthorized access: API key is EXPIRED": "expired",
        "Unauthorized access: invalid token (bad signature)": "invalid",
    }
    for detail, reason in cases.items():
        assert auth_failure_reason(errors.UnauthorizedError(detail)) == reason, detail
    assert auth_failure_reason(errors.ForbiddenError("no scope")) == "forbidden"
    assert auth_failure_reason(errors.NotFoundError("gone")) is None
