"""When a call is tried again, and how long to wait first."""

from __future__ import annotations

import httpx

# methods that may be sent twice (RFC 9110 9.2.2)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# statuses that mean "not accepted, come back later"
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 30.0
BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 4.0


def replayable(method: str, headers: httpx.Headers) -> bool:
    """Whether sending the request twice is harmless: an idempotent method, or an Idempotency-Key."""
    return method.upper() in IDEMPOTENT_METHODS or "idempotency-key" in headers


def retry_status(response: httpx.Response, *, replayable: bool) -> bool:
    """A 429/503 answer is retried when the request may be replayed, or when the platform did not
    accept it at all (no NVCF-REQID: it never reached a function; a function's own 503 has one)."""
    if response.status_code not in RETRY_STATUSES:
        return False
    return replayable or "nvcf-reqid" not in response.headers


def retry_error(error: httpx.TransportError, *, replayable: bool) -> bool:
    """A connection failure is retried when the request was surely not sent (the connection never
    opened), or when it may be replayed."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return replayable


def delay_s(attempt: int, retry_after_s: float | None) -> float:
    """The wait before retry `attempt` (0-based): the server's Retry-After (capped), else a backoff."""
    if retry_after_s is not None:
        return min(retry_after_s, MAX_RETRY_AFTER_S)
    return float(min(BACKOFF_BASE_S * 2**attempt, BACKOFF_MAX_S))
