"""The worker's HTTP client towards its function on 127.0.0.1:<port>: the request as the function sees
it (client headers plus the NVCF-* headers, reference/invocation.md 7.3) and the response's headers.
The connections themselves: worker/http_pool.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

from fnplane.compute.worker.bus import WorkerBus
from fnplane.compute.worker.http_pool import HttpPool, HttpResponse
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.shared import wire
from fnplane.shared.headers import HOP_BY_HOP
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.shared.models.functions import request_target
from fnplane.telemetry import tracing

# set by the worker; client-supplied copies are dropped (invocation.md 7.3)
RESERVED = frozenset(
    {
        "nvcf-reqid",
        "nvcf-sub",
        "nvcf-ncaid",
        "nvcf-function-name",
        "nvcf-function-id",
        "nvcf-function-version-id",
        "nvcf-asset-dir",
        "nvcf-function-asset-ids",
        "nvcf-large-output-dir",
        "nvcf-max-response-size-bytes",
        "nvcf-nspectid",
        "nvcf-backend",
        "nvcf-instancetype",
        "nvcf-region",
        "nvcf-env",
        "nvcf-invocation-region",
        "nvcf-poll-seconds",
        "host",
        "authorization",
        "content-length",
    }
)
DROPPED = RESERVED | HOP_BY_HOP
STREAM_TYPE = "text/event-stream"
# an idle connection to the function is closed after this long
KEEPALIVE_S = 60.0


def wants_stream(envelope: wire.Envelope) -> bool:
    return any(k.lower() == "accept" and STREAM_TYPE in v.lower() for k, v in envelope.headers)


def is_stream(resp: HttpResponse) -> bool:
    return STREAM_TYPE in (resp.header("Content-Type") or "")


# the gateway sets these on every answer: the function's own copies would make a client see two
GATEWAY_SET = frozenset({"nvcf-reqid", "nvcf-status"})
DROPPED_RESPONSE = HOP_BY_HOP | GATEWAY_SET


def response_headers(resp: HttpResponse) -> list[tuple[str, str]]:
    """The function's headers as the client gets them: no hop-by-hop header, neither the fixed ones nor
    those its `Connection` header lists (RFC 9110 7.6.1)."""
    out = [(k, v) for k, v in resp.headers if k.lower() not in DROPPED_RESPONSE]
    listed = [v for k, v in resp.headers if k.lower() == "connection"]
    if listed:
        names = {name.strip().lower() for value in listed for name in value.split(",")}
        out = [(k, v) for k, v in out if k.lower() not in names]
    return out


def platform_headers(
    env: wire.Envelope, assignment: InstanceAssignment, settings: WorkerSettings
) -> list[tuple[str, str]]:
    """What the platform tells the function about a request, whatever the protocol (HTTP headers,
    gRPC metadata in lower case)."""
    a = assignment
    return [
        ("NVCF-REQID", env.request_id),
        ("NVCF-SUB", env.subject),
        ("NVCF-NCAID", env.nca_id),
        ("NVCF-FUNCTION-NAME", env.function_name or a.function_name),
        ("NVCF-FUNCTION-ID", env.function_id),
        ("NVCF-FUNCTION-VERSION-ID", env.version_id),
        ("NVCF-NSPECTID", settings.nspect_id),
        ("NVCF-BACKEND", a.backend),
        ("NVCF-INSTANCETYPE", a.instance_type),
        ("NVCF-REGION", a.region),
        ("NVCF-ENV", settings.environment),
        ("NVCF-INVOCATION-REGION", env.invocation_region),
    ]


class FunctionClient:
    def __init__(
        self, function_url: str, assignment: InstanceAssignment, bus: WorkerBus, settings: WorkerSettings
    ) -> None:
        url = urlsplit(function_url)
        self._prefix = url.path.rstrip("/")
        self._assignment = assignment
        self._bus = bus
        self._settings = settings
        self._pool = HttpPool(
            url.hostname or "127.0.0.1",
            url.port or 80,
            connect_timeout_s=settings.connect_timeout_s,
            keepalive_s=KEEPALIVE_S,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    def request_headers(self, env: wire.Envelope, output_dir: str, asset_dir: str) -> list[tuple[str, str]]:
        a = self._assignment
        remaining = max(1, int(env.request_time + env.poll_s - time.time()))
        headers = [(k, v) for k, v in env.headers if k.lower() not in DROPPED]
        if tracing.enabled() and (trace := tracing.inject()):
            # the function's request continues the worker's span (tracing off: the client's own
            # traceparent passes untouched)
            headers = [(k, v) for k, v in headers if k.lower() not in wire.TRACE_HEADERS]
            headers += trace.items()
        if env.body_length is not None and env.body_more:
            headers.append(("Content-Length", str(env.body_length)))
        if env.mode is wire.InvocationMode.PEXEC and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        headers += platform_headers(env, a, self._settings)
        headers += [
            ("NVCF-ASSET-DIR", asset_dir),
            ("NVCF-LARGE-OUTPUT-DIR", output_dir),
            ("NVCF-MAX-RESPONSE-SIZE-BYTES", str(env.max_response_bytes)),
            ("NVCF-POLL-SECONDS", str(remaining)),
        ]
        if env.assets:
            headers.append(("NVCF-FUNCTION-ASSET-IDS", ",".join(x.asset_id for x in env.assets)))
        return headers

    def call(
        self, env: wire.Envelope, inline: bytes, headers: list[tuple[str, str]]
    ) -> Awaitable[HttpResponse]:
        """The function's response once its head arrived; the request body streams from the gateway.
        HttpConnectionError when the function cannot be reached; BodyError when the body cannot."""
        body = self._body(env, inline) if env.body_more else inline
        return self._pool.request(env.method, self._prefix + request_target(env.path), headers, body)

    async def _body(self, env: wire.Envelope, inline: bytes) -> AsyncIterator[bytes]:
        if inline:
            yield inline
        offset = len(inline)
        while True:
            chunk = await self._bus.pull_body(env, offset)
            if chunk.data:
                offset += len(chunk.data)
                yield chunk.data
            if chunk.eof:
                return
