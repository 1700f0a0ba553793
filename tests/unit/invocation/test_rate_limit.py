import pytest

from fnplane.invocation.rate_limit import RateLimiter, parse_rate, tiers
from fnplane.shared import errors
from fnplane.shared.models.access import AccessGrant, VersionTarget


def _target(rate_limit: dict[str, object] | None) -> VersionTarget:
    return VersionTarget(
        functionVersionId="v1",
        functionName="f",
        ownerNcaId="owner",
        status="ACTIVE",
        inferenceUrl="/",
        functionType="DEFAULT",
        rateLimit=rate_limit,
    )


def _grant(nca_id: str = "owner", subject: str = "alice") -> AccessGrant:
    return AccessGrant(ncaId=nca_id, subject=subject, scopes=["invoke_function"])


def test_parse_rate_keeps_the_stricter_limit_per_unit() -> None:
    assert parse_rate("5-S,300-H") == {1: 5, 3600: 300}
    assert parse_rate("10-M, 4-m") == {60: 4}


def test_tiers_per_user_then_one_account_tier() -> None:
    config = {"rateLimit": "10-S", "perNcaIdRate": {"big": "100-S"}, "perUserRate": "2-S"}
    assert tiers(config, "small", "bob") == [("user:bob:small", "2-S"), ("nca:small", "10-S")]
    assert tiers(config, "big", "bob") == [("user:bob:big", "2-S"), ("nca:big", "100-S")]
    assert tiers({"rateLimit": "1-S", "exemptedNcaIds": ["vip"]}, "vip", "x") == []


def test_limit_per_window_and_tiers_are_anded() -> None:
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    target = _target({"rateLimit": "2-M"})
    limiter.check(_grant(), target)
    limiter.check(_grant(subject="bob"), target)  # the account tier counts every subject
    with pytest.raises(errors.TooManyRequestsError):
        limiter.check(_grant(), target)
    limiter.check(_grant(nca_id="other"), target)  # another account has its own counter
    now[0] += 60
    limiter.check(_grant(), target)  # a new window
    unlimited = _target(None)
    for _ in range(10):
        limiter.check(_grant(), unlimited)


def test_a_refused_request_counts_nothing() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    target = _target({"rateLimit": "1-S", "perUserRate": "5-S"})
    limiter.check(_grant(), target)
    for _ in range(5):
        with pytest.raises(errors.TooManyRequestsError):
            limiter.check(_grant(), target)
    # alice's per-user budget (5) was not spent by the refusals; bob is refused by the account tier
    with pytest.raises(errors.TooManyRequestsError):
        limiter.check(_grant(subject="bob"), target)
