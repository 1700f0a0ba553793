"""Every Prometheus metric of the platform, by name: one table, like the bus topology.

Where NVCF has a metric for the same thing (reference/observability.md) the name, type, labels and
unit are NVCF's: `function_request`, `function_request_latency`, `app_invocation_error`,
`nvcf_function_queue_depth`, `nvcf_function_instances_current`, the worker's
`nvcf_worker_service_*` and the autoscaler's `nvcf_autoscaler_scaling_*`. The rest are `fnplane_*`.
prometheus-client renders every counter with the `_total` suffix of the Prometheus text format
(`function_request_total`, as NVCF's gRPC proxy names it; docs/compatibility.md).

Labels never carry credentials, request ids or unbounded values: function and version ids are
bounded by what is registered, routes are route names, statuses are status codes.

The worker's own metrics (busy time, slots, time in the function, queue wait) are measured in the
worker process and reach the agent in its `metrics` events; the agent exposes them
(`fnplane.compute.worker_metrics`), so a worker needs no port of its own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from fnplane.shared import errors

# no `*_created` series beside every counter and histogram: noise to most scrapers
disable_created_metrics()

VERSION_LABELS = ("function_id", "function_version_id")

# NVCF's latency buckets (0.5 s ... 30 min) with finer ones below: fnplane answers in milliseconds
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800)
# the worker's request latency: NVCF's (.1 ... 5000 s) with the same finer ones below
WORKER_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 10, 30, 100, 500, 1000, 5000)
QUEUE_WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
COLD_START_BUCKETS_S = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)

# --- invocation plane: the gateway and the gRPC proxy ------------------------------------------------

FUNCTION_REQUEST = Counter(
    "function_request",
    "Invocations started (pexec, exec, direct, gRPC sessions), counted at admission (NVCF).",
    ["function_id", "function_version_id", "nca_id"],
)
FUNCTION_REQUEST_LATENCY = Histogram(
    "function_request_latency",
    "Seconds from admission to the end of the response body (NVCF).",
    VERSION_LABELS,
    buckets=LATENCY_BUCKETS_S,
)
APP_INVOCATION_ERROR = Counter(
    "app_invocation_error",
    "Errors answered by the platform itself, not by the function (NVCF; 499: the client went away).",
    ["http_status_code", "function_id"],
)
INVOCATIONS = Counter(
    "fnplane_invocations",
    "Invocation answers by route (pexec, exec, direct, status, result, grpc) and status code "
    "(HTTP; gRPC: the status name).",
    ["function_id", "function_version_id", "route", "status_code"],
)
INVOCATIONS_IN_FLIGHT = Gauge(
    "fnplane_invocations_in_flight", "Invocations being answered now, by route.", ["route"]
)
SSE_EVENTS = Counter("fnplane_sse_events", "Server-sent events relayed to clients.", VERSION_LABELS)
SSE_BYTES = Counter("fnplane_sse_bytes", "Bytes of server-sent event streams relayed.", VERSION_LABELS)
QUEUE_DEPTH = Gauge(
    "nvcf_function_queue_depth", "Requests waiting for a worker, per version (NVCF).", VERSION_LABELS
)
COLD_START = Histogram(
    "fnplane_cold_start_seconds",
    "deploy: an instance's creation to its first ready report; wake: a version woken from zero (no "
    "worker serving it) to its first answer byte.",
    ["phase"],
    buckets=COLD_START_BUCKETS_S,
)
AUTH_FAILURES = Counter(
    "fnplane_auth_failures",
    "Requests refused for their credential: missing, malformed, unknown, expired, revoked, forbidden.",
    ["plane", "reason"],
)
GRPC_SESSIONS_ACTIVE = Gauge(
    "fnplane_grpc_sessions_active", "gRPC sessions holding a worker slot through this proxy."
)

# --- control plane -------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "fnplane_http_requests",
    "Control API requests by route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "fnplane_http_request_duration_seconds",
    "Control API request seconds by route template.",
    ["method", "route"],
    buckets=HTTP_BUCKETS_S,
)
INSTANCES_CURRENT = Gauge(
    "nvcf_function_instances_current", "Instances starting or running, per version (NVCF).", VERSION_LABELS
)
INSTANCES = Gauge(
    "fnplane_instances",
    "Instances per version and state (requested, starting, running).",
    [*VERSION_LABELS, "state"],
)
AUTOSCALER_CURRENT = Gauge(
    "nvcf_autoscaler_scaling_current_instances",
    "Instances when the autoscaler decided (NVCF).",
    VERSION_LABELS,
)
AUTOSCALER_DESIRED = Gauge(
    "nvcf_autoscaler_scaling_desired_instances", "Instances the autoscaler asked for (NVCF).", VERSION_LABELS
)
AUTOSCALER_UTILIZATION = Gauge(
    "nvcf_autoscaler_scaling_utilization",
    "Slot utilization the autoscaler decided on (NVCF).",
    VERSION_LABELS,
)
AUTOSCALER_DECISIONS = Counter(
    "fnplane_autoscaler_decisions", "Scaling decisions that changed a version: up or down.", ["direction"]
)

# --- compute plane: the agent, and its workers' reports -------------------------------------------------

WORKER_THREADS = "nvcf_worker_service_worker_thread_count_total"
WORKER_BUSY_SECONDS = "nvcf_worker_service_worker_thread_busy_seconds"
WORKER_REQUESTS = "nvcf_worker_service_request"
WORKER_REQUEST_LATENCY = "nvcf_worker_service_request_latency_seconds"
WORKER_QUEUE_WAIT = "fnplane_request_queue_wait_seconds"


class Distribution:
    """Bucket counts of observations, the worker's half of a histogram: it observes, sends `take()`
    in its metrics event, and the agent adds the counts up (`merge`)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        # one count per bound and one for +Inf; not cumulative
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def take(self) -> dict[str, object] | None:
        """The observations since the last take (None: none), and a fresh start."""
        if not any(self.counts):
            return None
        taken = {"counts": self.counts, "sum": round(self.total, 6)}
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        return taken

    def merge(self, taken: object) -> None:
        """Add a `take()` of a distribution with the same bounds; anything malformed is ignored."""
        if not isinstance(taken, dict):
            return
        counts, total = taken.get("counts"), taken.get("sum")
        if not isinstance(counts, list) or len(counts) != len(self.counts):
            return
        if not isinstance(total, int | float) or not all(isinstance(c, int) and c >= 0 for c in counts):
            return
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        self.total += float(total)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus `le` buckets, cumulative, ending with +Inf."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
        return out


_AUTH_REASONS = (
    ("missing", "missing"),
    ("expected", "malformed"),
    ("must be", "malformed"),
    ("malformed", "malformed"),
    ("unsupported", "malformed"),
    ("expired", "expired"),
    ("revoked", "revoked"),
    ("suspended", "revoked"),
    ("unknown", "unknown"),
)


def auth_failure_reason(error: errors.FnplaneError) -> str | None:
    """The reason label of a refused credential (None: the error is no auth failure)."""
    if isinstance(error, errors.ForbiddenError):
        return "forbidden"
    if not isinstance(error, errors.UnauthorizedError):
        return None
    detail = str(error.detail).lower()
    return next((reason for word, reason in _AUTH_REASONS if word in detail), "invalid")


def count_auth_failure(plane: str, error: errors.FnplaneError) -> None:
    reason = auth_failure_reason(error)
    if reason is not None:
        AUTH_FAILURES.labels(plane, reason).inc()
