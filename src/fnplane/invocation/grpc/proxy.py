"""The gRPC proxy (invocation plane): any service and method, routed by metadata to a function.

    proxy = GrpcProxy(service, bus, GrpcSettings(), host="127.0.0.1", port=8081)
    await proxy.start()
    ...
    await proxy.aclose()

Clients call their own service on the gRPC port with metadata `authorization: Bearer <key>`,
`function-id` and optionally `function-version-id` (reference/invocation.md 3.9). The proxy serves
every method as a bidirectional stream of raw messages (unary, server-, client- and bidirectional
streaming all look like that on the wire), so it needs no protobuf of the function's:

    GrpcFront (front.py)        the public port (h2c or TLS): one pipe per client connection
    grpcio aio server           on a private loopback port behind the front; a generic handler
    SessionTable (sessions.py)  the connection's session for the function: admission, the worker
    CallRelay (calls.py)        one call over its session

`grpc.health.v1.Health/Check` without a `function-id` is the proxy's own health (for load balancers).
It shares the gateway's InvocationService (access, version choice, rate limits, wake, revocations)
and RequestBus; run beside a gateway (`fnplane up`) or as a process of its own (`fnplane grpc-proxy`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from fnplane.invocation.bus import RequestBus
from fnplane.invocation.grpc.calls import CallRelay
from fnplane.invocation.grpc.codes import status_of
from fnplane.invocation.grpc.front import GrpcFront, server_ssl_context
from fnplane.invocation.grpc.sessions import SessionTable
from fnplane.invocation.grpc.settings import GrpcSettings
from fnplane.invocation.routing import is_uuid
from fnplane.invocation.service import InvocationService
from fnplane.shared import errors, metrics

log = logging.getLogger(__name__)

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def call_target(metadata: Sequence[tuple[str, Any]]) -> tuple[str, str, str | None]:
    """(bearer, functionId, versionId) of a call, from its metadata."""
    values = {key: value for key, value in metadata if isinstance(value, str)}
    authorization = values.get("authorization", "")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.UnauthorizedError("metadata authorization must be 'Bearer <API key or token>'")
    function_id = values.get("function-id", "").strip().lower()
    if not function_id:
        raise errors.BadRequestError("metadata function-id is required", field="function-id", rule="required")
    version_id = values.get("function-version-id", "").strip().lower() or None
    for name, value in (("function-id", function_id), ("function-version-id", version_id)):
        if value is not None and not is_uuid(value):
            raise errors.BadRequestError(f"metadata {name} must be a UUID", field=name, rule="UUID")
    return token.strip(), function_id, version_id


class GrpcProxy:
    def __init__(
        self,
        service: InvocationService,
        bus: RequestBus,
        settings: GrpcSettings,
        *,
        host: str,
        port: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self._settings = settings
        self._host = host
        self.port = port
        self._tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
        self.sessions = SessionTable(service, bus, settings)
        self._server: grpc.aio.Server | None = None
        self._front: GrpcFront | None = None

    async def start(self) -> None:
        s = self._settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                # idle connections stay open, and clients keeping them alive with PINGs are welcome
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", int(s.min_client_ping_interval_s * 1000)),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((_AnyMethod(self),))
        inner_port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        ssl_context = server_ssl_context(str(self._tls[0]), str(self._tls[1])) if self._tls else None
        self._front = GrpcFront(
            self._host, self.port, inner_port, self.sessions.connection_closed, ssl_context
        )
        try:
            await self._front.start()
        except OSError as exc:
            await self.aclose()
            raise errors.UnavailableError(
                f"cannot serve gRPC on {self._host}:{self.port}: {exc.strerror} (pass --grpc-port)"
            ) from None

    async def aclose(self) -> None:
        if self._front is not None:
            await self._front.aclose()
            self._front = None
        await self.sessions.aclose()
        if self._server is not None:
            await self._server.stop(self._settings.stop_grace_s)
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def call(
        self, method: str, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Every call on the gRPC port: admitted, then relayed over its session."""
        metadata = list(context.invocation_metadata() or ())
        function_id = version_id = ""
        try:
            bearer, function_id, pinned = call_target(metadata)
            front = self._front
            connection = front.connection(context.peer()) if front is not None else None
            if connection is None:
                raise errors.UnavailableError("calls are served only through the gRPC port")
            session = await self.sessions.session(
                connection, bearer, function_id, pinned, context.time_remaining()
            )
        except errors.FnplaneError as exc:
            metrics.count_auth_failure("invocation", exc)
            code = status_of(exc)
            count_call(function_id, version_id, code, own=True)
            await context.abort(code, exc.detail)
        version_id = session.target.version_id
        forwarded = [(k, v) for k, v in metadata if k != "authorization"]
        try:
            await CallRelay(session, method, forwarded, context, self._settings).run()
        finally:
            count_call(function_id, version_id, _code_of(context), own=False)


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpcio hands back the number it was set to
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.OK if code is None else grpc.StatusCode.UNKNOWN


def count_call(function_id: str, version_id: str, code: grpc.StatusCode, *, own: bool) -> None:
    """One gRPC call's answer, as the gateway counts HTTP ones (route `grpc`, the status name); the
    function only once admitted (a client's made-up ids must not grow the label set)."""
    function_id = function_id if version_id else ""
    metrics.INVOCATIONS.labels(function_id, version_id, "grpc", code.name).inc()
    if own:
        metrics.APP_INVOCATION_ERROR.labels(code.name, function_id).inc()


class _AnyMethod(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcProxy) -> None:
        self._proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method == HEALTH_CHECK and not any(
            key == "function-id" for key, _ in handler_call_details.invocation_metadata or ()
        ):
            return grpc.unary_unary_rpc_method_handler(
                _own_health,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            )
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._proxy.call, method))


async def _own_health(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
