"""One request on the worker as logs and traces see it.

    with WorkObservation(delivery):      the request's ids on every log line of its task; with tracing
        ...                              on, its spans, the current span while it runs

Spans (tracing on only), parented on the trace context the queued request carries (the gateway's
span; when the gateway does not trace, the client's own `traceparent`): `queue wait` (from the moment
the gateway accepted the request to its delivery here) and `Handle Work Request` (kind consumer,
attribute `requestId`, as NVCF's worker names it), the parent of the `traceparent` the function gets.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from fnplane.compute.worker.bus import Delivery
from fnplane.shared import wire
from fnplane.telemetry import logs, tracing


def client_trace(headers: list[tuple[str, str]]) -> dict[str, str] | None:
    """The client's own trace context among the headers it sent."""
    found = {k.lower(): v for k, v in headers if k.lower() in wire.TRACE_HEADERS}
    return found if wire.HDR_TRACEPARENT in found else None


class WorkObservation:
    __slots__ = ("_delivery", "_span", "_span_token", "_token")

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery
        self._span: Any = None
        self._span_token: Any = None

    def __enter__(self) -> None:
        env = self._delivery.envelope
        self._token = logs.bind(
            request_id=env.request_id,
            function_id=env.function_id,
            function_version_id=env.version_id,
            account=env.nca_id,
        )
        if tracing.enabled():
            self._start_spans(env)

    def _start_spans(self, env: wire.Envelope) -> None:
        parent = self._delivery.trace or client_trace(env.headers)
        attributes = {
            "request_id": env.request_id,
            "function_id": env.function_id,
            "function_version_id": env.version_id,
            "nca_id": env.nca_id,
        }
        now_ns = time.time_ns()
        self._span = tracing.start_span(
            "Handle Work Request",
            kind=tracing.CONSUMER,
            parent=parent or {},  # nothing to continue: a trace of its own
            attributes={"requestId": env.request_id, **attributes, "fnplane.mode": str(env.mode)},
            start_ns=now_ns,
        )
        tracing.record_span(
            "queue wait",
            start_ns=int(env.request_time * 1e9),
            end_ns=now_ns,
            # beside the work, under the gateway's span; without one, under the work's own
            parent=parent or tracing.inject(self._span),
            attributes={**attributes, "fnplane.delivery": self._delivery.attempt},
        )
        self._span_token = tracing.activate(self._span)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._span is not None:
            tracing.end_span(self._span, error=None if error is None else repr(error))
            tracing.deactivate(self._span_token)
        logs.unbind(self._token)
