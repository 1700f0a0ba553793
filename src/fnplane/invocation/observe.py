"""What the gateway counts of each invocation answer: status, bytes, server-sent events, latency.

The request's `RequestTelemetry` (request_telemetry.py) watches the answer; for an invocation or a
status call it is also what this module counts when the request ends (`record()`). The parts that learn
more (the chosen version at admission; whether the platform itself made the answer) find it through a
context variable, so no signature on the request path grows for metrics.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final

from fnplane.shared import metrics

if TYPE_CHECKING:
    from fnplane.invocation.request_telemetry import RequestTelemetry

_CURRENT: ContextVar[RequestTelemetry | None] = ContextVar("fnplane_observation", default=None)
# routes whose answers are the function's (their latency is NVCF's function_request_latency)
INVOKING: Final = frozenset({"pexec", "exec", "direct"})
CLIENT_GONE: Final = 499
_ROUTES: Final = ("pexec", "exec", "direct", "status")
# label children looked up once: .labels() takes a lock and builds a key on every call
_IN_FLIGHT = {route: metrics.INVOCATIONS_IN_FLIGHT.labels(route) for route in _ROUTES}


def route_of(method: str, path: str) -> tuple[str, str] | None:
    """(route, function id) of a path-routed invocation or status call; None for any other path."""
    if not path.startswith("/v2/nvcf/"):
        return None
    parts = path.split("/")  # ['', 'v2', 'nvcf', 'pexec', 'functions', fid, ...]
    if len(parts) >= 6 and parts[3] in ("pexec", "exec") and parts[4] == "functions" and method == "POST":
        return parts[3], parts[5]
    if len(parts) == 6 and parts[3] in ("pexec", "exec") and parts[4] == "status" and method == "GET":
        return "status", ""
    return None


def started(seen: RequestTelemetry) -> Token[RequestTelemetry | None]:
    """An invocation (or status call) is being answered in this context; `ended()` with the token."""
    assert seen.counted is not None
    _IN_FLIGHT[seen.counted].inc()
    return _CURRENT.set(seen)


def ended(seen: RequestTelemetry, token: Token[RequestTelemetry | None], duration_s: float) -> None:
    """Count the answer of an invocation `started()`."""
    _CURRENT.reset(token)
    route = seen.counted
    assert route is not None
    _IN_FLIGHT[route].dec()
    status = seen.status if seen.status is not None else CLIENT_GONE
    vid = seen.version_id
    # the function only once admitted: a client's made-up ids must not grow the label set
    fid = seen.function_id if vid else ""
    series = _series(fid, vid, route, status)
    series.invocations.inc()
    if seen.own_error or status == CLIENT_GONE:
        metrics.APP_INVOCATION_ERROR.labels(str(status), fid).inc()
    if series.latency is not None:
        # NVCF-REQID of the answer: the exemplar that leads from a slow bucket to its logs
        exemplar = {"request_id": seen.request_id} if seen.request_id else None
        series.latency.observe(duration_s, exemplar)
    if seen.sse and vid:
        metrics.SSE_EVENTS.labels(fid, vid).inc(seen.events)
        metrics.SSE_BYTES.labels(fid, vid).inc(seen.body_bytes)


class _Series:
    """The label children one kind of answer updates, looked up once: `.labels()` validates, locks and
    builds a key on every call, a few microseconds each on every request."""

    __slots__ = ("invocations", "latency")

    def __init__(self, function_id: str, version_id: str, route: str, status: int) -> None:
        labels = metrics.INVOCATIONS.labels(function_id, version_id, route, str(status))
        self.invocations = labels
        self.latency = (
            metrics.FUNCTION_REQUEST_LATENCY.labels(function_id, version_id)
            if route in INVOKING and version_id
            else None
        )


# bounded like the series themselves: versions x routes x status codes
_SERIES: dict[tuple[str, str, str, int], _Series] = {}
_STARTED: dict[tuple[str, str, str], Any] = {}


def _series(function_id: str, version_id: str, route: str, status: int) -> _Series:
    key = (function_id, version_id, route, status)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = _Series(function_id, version_id, route, status)
    return series


def chosen(version_id: str, nca_id: str) -> None:
    """The caller may invoke the function, and this version will serve (its answer is the version's,
    a rate limit's 429 included)."""
    seen = _CURRENT.get()
    if seen is not None:
        seen.version_id = version_id
        seen.nca_id = nca_id


def admitted(function_id: str, version_id: str, nca_id: str) -> None:
    """An invocation passed admission (counted at its start, as NVCF's function_request)."""
    key = (function_id, version_id, nca_id)
    started = _STARTED.get(key)
    if started is None:
        started = _STARTED[key] = metrics.FUNCTION_REQUEST.labels(function_id, version_id, nca_id)
    started.inc()


def own_error() -> None:
    """The answer being made is the platform's own error (problem+json, a gateway timeout)."""
    seen = _CURRENT.get()
    if seen is not None:
        seen.own_error = True


def located(function_id: str, version_id: str) -> None:
    """A status call found its request's function and version."""
    seen = _CURRENT.get()
    if seen is not None:
        seen.function_id = function_id
        seen.version_id = version_id
