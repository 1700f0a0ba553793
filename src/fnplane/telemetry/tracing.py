"""Traces: the OpenTelemetry SDK, set up from the standard OTEL_* variables when an OTLP endpoint is set.

    configure_tracing("fnplane")       in an entry point (fnplane up, grpc-proxy, each worker)
    shutdown_tracing()                 at exit: export the spans still batched

Without `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or with
`OTEL_SDK_DISABLED=true`) tracing is off: no tracer provider is installed, OpenTelemetry is not even
imported, and every helper below is one check of a module global. When on, the exporter, its protocol
(`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf`, the default, or `grpc`), headers, the batch
processor (`OTEL_BSP_*`), the sampler (`OTEL_TRACES_SAMPLER`, default parent-based always-on), the
propagators (`OTEL_PROPAGATORS`, default W3C trace context + baggage) and the resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) are the SDK's own, read from the environment.

The state is process-global because OpenTelemetry's tracer provider and propagators are; only entry
points configure it. Helpers take and return plain carriers (`Mapping[str, str]`, e.g. HTTP or NATS
headers) and opaque span objects, so no caller imports OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

SERVER = "server"
CONSUMER = "consumer"
CLIENT = "client"
PRODUCER = "producer"
INTERNAL = "internal"

Attributes = Mapping[str, str | int | float | bool]
# at exit, spans still batched get this long to reach the collector
SHUTDOWN_TIMEOUT_S = 3.0


class _Tracing:
    """What a configured process holds: the provider, its tracer, and the API modules used per span."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, propagate, trace

        self.provider = provider
        self.tracer = provider.get_tracer("fnplane")
        self.trace = trace
        self.context = context
        self.propagate = propagate
        self.kinds = {
            SERVER: trace.SpanKind.SERVER,
            CONSUMER: trace.SpanKind.CONSUMER,
            CLIENT: trace.SpanKind.CLIENT,
            PRODUCER: trace.SpanKind.PRODUCER,
            INTERNAL: trace.SpanKind.INTERNAL,
        }


_state: _Tracing | None = None


def endpoint_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint for traces is set (and the SDK is not disabled)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def configure_tracing(service_name: str, attributes: Attributes | None = None) -> bool:
    """Install the SDK's tracer provider with an OTLP exporter when an endpoint is set; True if it did.

    `service_name` is the default of `OTEL_SERVICE_NAME`; `attributes` join the resource."""
    global _state
    if _state is not None or not endpoint_configured():
        return _state is not None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "http/protobuf"
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    extra = dict(attributes or {})
    named = Resource.create().attributes.get(SERVICE_NAME, "")
    if str(named).startswith("unknown_service"):  # neither OTEL_SERVICE_NAME nor the resource names it
        extra[SERVICE_NAME] = service_name
    # shutdown_tracing() bounds the last export; the SDK's exit hook would wait up to 30 s
    provider = TracerProvider(resource=Resource.create(extra), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state = _Tracing(provider)
    log.info("tracing on: spans exported over OTLP (%s)", protocol)
    return True


def shutdown_tracing(timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
    """Export what is still batched and stop the exporter (once, at the process's end), waiting at
    most `timeout_s`: the SDK's own shutdown retries an unreachable collector for up to 30 s, which
    would hold up every stop (the agent would kill its workers at the end of their grace)."""
    global _state
    state, _state = _state, None
    if state is None:
        return
    # a daemon thread: what is not exported within the bound is dropped when the process exits
    flush = threading.Thread(target=state.provider.shutdown, name="otel-shutdown", daemon=True)
    flush.start()
    flush.join(timeout_s)
    if flush.is_alive():
        log.warning("tracing: the spans still batched were not exported within %.1f s; dropped", timeout_s)


def enabled() -> bool:
    return _state is not None


def _context(parent: Mapping[str, str] | None) -> Any:
    assert _state is not None
    return _state.propagate.extract(parent) if parent is not None else None


def start_span(
    name: str,
    *,
    kind: str = INTERNAL,
    parent: Mapping[str, str] | None = None,
    attributes: Attributes | None = None,
    start_ns: int | None = None,
) -> Any | None:
    """A span continuing the trace context in `parent` (a carrier: headers), else the current one;
    not made current (`activate()`). None while tracing is off."""
    state = _state
    if state is None:
        return None
    return state.tracer.start_span(
        name, context=_context(parent), kind=state.kinds[kind], attributes=attributes, start_time=start_ns
    )


def activate(span: Any) -> Any:
    """Make `span` the current span (its children and `inject()` see it); `deactivate()` the token."""
    assert _state is not None
    return _state.context.attach(_state.trace.set_span_in_context(span))


def deactivate(token: Any) -> None:
    assert _state is not None
    _state.context.detach(token)


def end_span(span: Any, *, error: str | None = None, end_ns: int | None = None) -> None:
    """End `span`; with `error`, its status says so."""
    assert _state is not None
    if error is not None:
        span.set_status(_state.trace.Status(_state.trace.StatusCode.ERROR, error))
    span.end(end_time=end_ns)


def record_span(
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    parent: Mapping[str, str] | None = None,
    kind: str = INTERNAL,
    attributes: Attributes | None = None,
) -> None:
    """A span of something already over (e.g. the time a request waited in its queue)."""
    span = start_span(name, kind=kind, parent=parent, attributes=attributes, start_ns=start_ns)
    if span is not None:
        span.end(end_time=max(start_ns, end_ns))


@contextlib.contextmanager
def _current_span(name: str, attributes: Attributes | None) -> Iterator[Any]:
    assert _state is not None
    with _state.tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


_OFF = contextlib.nullcontext()


def span(name: str, attributes: Attributes | None = None) -> contextlib.AbstractContextManager[Any]:
    """A child of the current span, current while the block runs; a shared no-op while tracing is off."""
    if _state is None:
        return _OFF
    return _current_span(name, attributes)


def inject(span: Any = None) -> dict[str, str] | None:
    """The trace context of `span` (default: the current span) as W3C headers (`traceparent`, maybe
    `tracestate`); None when off."""
    state = _state
    if state is None:
        return None
    carrier: dict[str, str] = {}
    context = state.trace.set_span_in_context(span) if span is not None else None
    state.propagate.inject(carrier, context=context)
    return carrier or None


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when off or outside a span."""
    state = _state
    if state is None:
        return None
    ctx = state.trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
