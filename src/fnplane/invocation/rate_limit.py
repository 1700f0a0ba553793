"""Function rate limits (`rateLimit` of a function version; invocation.md 5.5): 429 when exceeded.

A version's `rateLimit` object has up to three tiers, evaluated as AND: the per-user tier
(`perUserRate`, counted per caller subject), then one account tier: `perNcaIdRate[callerNcaId]` if
present, else the global `rateLimit` unless the caller's account is in `exemptedNcaIds`. A rate string
is `<n>-<unit>[,<n>-<unit>...]` with units S, M, H, D; for a repeated unit the stricter limit wins.

Counters are windows per (tier key, version, period) that start at their first request and last one
period (as NVCF's ulule/limiter store counts), kept in this gateway process. NVCF counts in a shared
store and checks asynchronously (a request may pass before its tier is flagged); fnplane checks every
request synchronously, so a limit of N per period admits exactly N per window per gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fnplane.shared import errors
from fnplane.shared.models.access import AccessGrant, VersionTarget

_UNIT_S = {"S": 1, "M": 60, "H": 3600, "D": 86400}
_MAX_COUNTERS = 100_000


def parse_rate(rate: str) -> dict[int, int]:
    """{period seconds: allowed count}; the stricter limit wins for a repeated unit."""
    limits: dict[int, int] = {}
    for part in rate.split(","):
        count_s, _, unit = part.strip().partition("-")
        period = _UNIT_S.get(unit.strip().upper())
        if period is None or not count_s.strip().isdigit():
            continue  # validated at create; never fail an invocation on a stored oddity
        count = int(count_s)
        limits[period] = min(count, limits.get(period, count))
    return limits


def tiers(config: dict[str, Any], nca_id: str, subject: str) -> list[tuple[str, str]]:
    """(counter key, rate string) of every tier that applies to this caller."""
    out: list[tuple[str, str]] = []
    per_user = config.get("perUserRate")
    if per_user:
        out.append((f"user:{subject}:{nca_id}", per_user))
    per_nca = config.get("perNcaIdRate") or {}
    if nca_id in per_nca:
        out.append((f"nca:{nca_id}", per_nca[nca_id]))
    elif config.get("rateLimit") and nca_id not in (config.get("exemptedNcaIds") or []):
        out.append((f"nca:{nca_id}", config["rateLimit"]))
    return out


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (tier key, version, period) -> (window end, requests counted in the window)
        self._windows: dict[tuple[str, str, int], tuple[float, int]] = {}

    def check(self, grant: AccessGrant, target: VersionTarget) -> None:
        """Count this request against the version's limits, or raise TooManyRequestsError (counts nothing)."""
        config = target.rate_limit
        if not config:
            return
        now = self._clock()
        counted: list[tuple[tuple[str, str, int], tuple[float, int]]] = []
        for tier, rate in tiers(config, grant.nca_id, grant.subject):
            for period, allowed in parse_rate(rate).items():
                key = (tier, target.version_id, period)
                end, count = self._windows.get(key, (0.0, 0))
                if now >= end:
                    end, count = now + period, 0
                if count >= allowed:
                    raise errors.TooManyRequestsError(
                        f"exceeded rate limit: {allowed} requests per {period} s for function version "
                        f"{target.version_id}"
                    )
                counted.append((key, (end, count + 1)))
        if len(self._windows) >= _MAX_COUNTERS:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        self._windows.update(counted)
