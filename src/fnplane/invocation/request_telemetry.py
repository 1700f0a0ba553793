"""One gateway request as logs, traces and metrics see it: its log context, its server span, its
access line and, for an invocation or a status call, what observe.py counts of it.

    seen = RequestTelemetry(request, direct=..., counted=...)   binds the log context, opens the span,
                                                    watches `send`, counts the invocation in flight
    ...                                             invoke.py annotates request id, function, version,
                                                    account; observe.chosen() etc. fill in the metrics
    seen.close()                                    the metrics, the access line on `fnplane.access`,
                                                    the span ended

One object and one wrapper of `send` per request (the answer's status, its NVCF-REQID, its bytes and
server-sent events), and one pair of clock reads: the access line's duration is the latency histogram's.

The span (tracing on only) continues the client's W3C `traceparent`; it is named `<METHOD> <route>` as
NVCF names its invocation span, with `request_id`, `function_id`, `function_version_id`, `nca_id` and
the HTTP status as attributes. Its context is what the queued request carries to the worker.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from fnplane.invocation import observe
from fnplane.invocation.http import Message, Request, Send
from fnplane.invocation.routing import is_uuid
from fnplane.telemetry import logs, tracing

access_log = logs.LineLogger(logging.getLogger(logs.ACCESS_LOGGER))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EVENT_STREAM = b"text/event-stream"

# log fields -> span attributes (NVCF's IS span fields)
_SPAN_ATTRIBUTES = (
    ("request_id", "request_id"),
    ("function_id", "function_id"),
    ("function_version_id", "function_version_id"),
    ("account", "nca_id"),
)


def route_kind(path: str, direct: bool) -> str:
    """direct, pexec, exec, pexec-status, exec-status, pexec-results, assets, queues."""
    if direct:
        return "direct"
    parts = path.split("/", 5)
    kind = parts[3] if len(parts) > 3 else ""
    if len(parts) > 4 and parts[4] in ("status", "results"):
        return f"{kind}-{parts[4]}"
    return kind


def route_template(path: str) -> str:
    """The path with its ids replaced: `/v2/nvcf/pexec/functions/{id}` (the span's `http.route`)."""
    return "/".join("{id}" if is_uuid(part) else part for part in path.split("/"))


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def log_access(
    method: str,
    path: str,
    route: str,
    status: int | str | None,
    duration_ms: float,
    fields: Mapping[str, Any],
) -> None:
    """The access line of one request (an HTTP request, or one call of a gRPC session)."""
    # the path is the client's, percent-decoded: a %0A in it must not start a forged line of its own
    shown = _CONTROL.sub(_escape, path) if _CONTROL.search(path) else path
    access_log.info(
        "%s %s %s %s %.1f ms",
        (method, shown, route, status if status is not None else "-", duration_ms),
        {
            **fields,
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        },
    )


class RequestTelemetry:
    __slots__ = ("_newline", "_observed", "_request", "_span", "_span_token", "_started", "_token",
                 "body_bytes", "counted", "events", "function_id", "nca_id", "own_error", "request_id",
                 "route", "sse", "status", "version_id")  # fmt: skip

    def __init__(
        self,
        request: Request,
        *,
        direct: tuple[str, str | None] | None,
        counted: tuple[str, str] | None = None,
    ) -> None:
        """`direct`: (function id, version id or None) of a direct invocation; `counted`: (metrics
        route, function id) of an invocation or status call (observe.route_of), None for other paths."""
        self._request = request
        self.route = route_kind(request.path, direct is not None)
        self.status: int | None = None
        # NVCF-REQID of the answer (the latency exemplar, and the log's request id where none was bound)
        self.request_id = ""
        # what observe.py counts: the answer's bytes and server-sent events, the admitted version and
        # account, whether the platform itself made the answer (an error of its own, a timeout)
        self.sse = False
        self.events = 0
        self.body_bytes = 0
        self._newline = False
        self.version_id = ""
        self.nca_id = ""
        self.own_error = False
        if direct is None:
            self._token = logs.bind()
        elif direct[1] is None:
            self._token = logs.bind(function_id=direct[0])
        else:
            self._token = logs.bind(function_id=direct[0], function_version_id=direct[1])
        self._span = self._span_token = None
        if tracing.enabled():
            self._start_span(request, direct is not None)
        request.send = self._watch(request.send)
        # the metrics' route label and function id (observe.py): None, "" when not counted
        self.counted: str | None = None
        self.function_id = ""
        self._observed: Token[RequestTelemetry | None] | None = None
        if counted is not None:
            self.counted, self.function_id = counted
            self._observed = observe.started(self)
        self._started = time.perf_counter()

    def _start_span(self, request: Request, direct: bool) -> None:
        route = "direct" if direct else route_template(request.path)
        span = tracing.start_span(
            f"{request.method} {route}",
            kind=tracing.SERVER,
            parent=request.headers,
            attributes={
                "http.request.method": request.method,
                "http.route": route,
                "url.path": request.path,
                "fnplane.route": self.route,
            },
        )
        self._span = span
        self._span_token = tracing.activate(span)

    def _watch(self, send: Send) -> Send:
        async def send_watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                for name, value in message.get("headers") or ():
                    if name == b"content-type" and value.startswith(_EVENT_STREAM):
                        self.sse = True
                    elif name == b"nvcf-reqid":
                        self.request_id = value.decode("latin-1")
                        if "request_id" not in logs.current_fields():
                            # an answer whose request id was minted elsewhere (queued whole: submissions.py)
                            logs.annotate(request_id=self.request_id)
            else:
                body = message.get("body")
                if body:
                    self.body_bytes += len(body)
                    if self.sse:
                        self._count_events(body)
            await send(message)

        return send_watched

    def _count_events(self, body: bytes) -> None:
        # an event ends with a blank line; it may straddle two chunks
        self.events += body.count(b"\n\n") + body.count(b"\r\n\r\n")
        if self._newline and body[:1] == b"\n":
            self.events += 1
        self._newline = body[-1:] == b"\n" and body[-2:] != b"\n\n"

    def close(self) -> None:
        """The request is over (answered, failed or abandoned)."""
        duration_s = time.perf_counter() - self._started
        if self._observed is not None:
            observe.ended(self, self._observed, duration_s)
        duration_ms = round(duration_s * 1000, 3)
        fields = logs.current_fields()
        status = self.status
        request = self._request
        log_access(request.method, request.path, self.route, status, duration_ms, fields)
        if self._span is not None:
            span = self._span
            for field, attribute in _SPAN_ATTRIBUTES:
                if (value := fields.get(field)) is not None:
                    span.set_attribute(attribute, value)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            error = None if status is not None and status < 500 else f"status {status or 'none'}"
            tracing.end_span(span, error=error)
            tracing.deactivate(self._span_token)
        logs.unbind(self._token)
