"""The gateway ASGI application (invocation plane), wired in one place.

    gateway = create_gateway_app(settings, nats_url, authority)
    await gateway.start()        # or let the ASGI lifespan protocol start it
    ...                          # serve: `if is_gateway_request(scope): await gateway(scope, receive, send)`
    await gateway.aclose()       # or lifespan shutdown

It serves direct invocation (Host `{fid}.invocation.{domain}` / `{vid}.{fid}.invocation.{domain}` or the
`function-id` / `function-version-id` headers, any method and path), pexec/exec and their status,
signed large-result downloads, assets and queues. `is_gateway_request(scope)` tells a composing server
which requests are the gateway's. Every FnplaneError becomes problem+json (http.error_answer).

Parts, each built once here and handed to the parts that use it:

    RequestBus (bus.py) -> Buckets, UrlSigner           NATS: queues, responses, buckets, revocations
    CachedAccess, RateLimiter, Waker                     admission and scale from zero
    OpenInvocations, Revocations (revocations.py)        a revoked credential's grants and invocations
    UndeployedQueues (undeploys.py)                      an undeployed version's queued requests
    InvocationService (service.py)                       every invocation's decisions
    ConcurrencyLimit (backpressure.py)                   503 beyond the gateway's in-flight limit
    endpoints: invocations.py, status.py, queues.py, assets.py,
               submissions.py (respond-async, idempotency keys, cancel)
    Router (router.py)                                   the path table
    RequestTelemetry (request_telemetry.py)              per request: log context, span, access line,
                                                         an invocation's metrics (observe.py)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fnplane.bus.connection import BusCredential
from fnplane.invocation import invocations, observe, submissions
from fnplane.invocation.access import CachedAccess
from fnplane.invocation.assets import AssetEndpoints
from fnplane.invocation.backpressure import ConcurrencyLimit
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.http import (
    EXPOSE,
    Message,
    Receive,
    Request,
    Scope,
    Send,
    send_bytes,
    send_error,
    send_method_not_allowed,
)
from fnplane.invocation.queues import QueueEndpoints
from fnplane.invocation.rate_limit import RateLimiter
from fnplane.invocation.request_telemetry import RequestTelemetry
from fnplane.invocation.revocations import OpenInvocations, Revocations
from fnplane.invocation.router import Endpoint, Route, Router
from fnplane.invocation.routing import direct_target, is_gateway_request
from fnplane.invocation.service import InvocationService
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.invocation.status import StatusEndpoints
from fnplane.invocation.submissions import Submissions
from fnplane.invocation.undeploys import UndeployedQueues
from fnplane.invocation.waker import Waker
from fnplane.shared import errors, metrics, wire
from fnplane.shared.asgi import without_body
from fnplane.shared.contracts import AccessAuthority
from fnplane.telemetry import logs

__all__ = ["Gateway", "GatewaySettings", "create_gateway_app", "is_gateway_request"]

log = logging.getLogger(__name__)

# NVCF's path router is fully permissive CORS: every answer (success or error) allows any origin and
# exposes nvcf-reqid, a preflight is answered by the gateway; host-routed requests, OPTIONS included, go
# to the function unchanged
ALLOW_ORIGIN = (b"access-control-allow-origin", b"*")
CORS_HEADERS = [
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"*"),
    (b"access-control-max-age", b"86400"),
]
INVOCATION_PREFIXES = ("/v2/nvcf/pexec/", "/v2/nvcf/exec/")


def routes(
    service: InvocationService,
    status: StatusEndpoints,
    queues: QueueEndpoints,
    assets: AssetEndpoints,
    queued: Submissions,
    limit: ConcurrencyLimit,
) -> list[Route]:
    def invoke(
        endpoint: Callable[[InvocationService, Request, str, str | None], Awaitable[None]],
        whole: Callable[[Request, str, str | None], Awaitable[None]],
    ) -> Endpoint:
        async def call(request: Request, function_id: str, version_id: str | None = None) -> None:
            logs.annotate(function_id=function_id)  # for the access line even when admission fails
            if version_id is not None:
                logs.annotate(function_version_id=version_id)
            with limit.hold():
                if submissions.applies(request):  # respond-async or an Idempotency-Key
                    await whole(request, function_id, version_id)
                else:
                    await endpoint(service, request, function_id, version_id)

        return call

    return [
        Route("POST", "pexec/functions/{fid}", invoke(invocations.pexec, queued.pexec)),
        Route("POST", "pexec/functions/{fid}/versions/{vid}", invoke(invocations.pexec, queued.pexec)),
        Route("POST", "exec/functions/{fid}", invoke(invocations.exec_, queued.exec_)),
        Route("POST", "exec/functions/{fid}/versions/{vid}", invoke(invocations.exec_, queued.exec_)),
        Route("GET", "pexec/status/{rid}", status.pexec_status),
        Route("DELETE", "pexec/status/{rid}", queued.cancel),
        Route("GET", "exec/status/{rid}", status.exec_status),
        Route("DELETE", "exec/status/{rid}", queued.cancel),
        Route("GET", "pexec/results/{rid}", status.download_result),
        Route("POST", "assets", assets.create),
        Route("GET", "assets", assets.list),
        Route("GET", "assets/{id}", assets.get),
        Route("DELETE", "assets/{id}", assets.delete),
        Route("PUT", "assets/{id}/upload", assets.upload),
        Route("GET", "assets/{id}/content", assets.content),
        Route("GET", "assets/{id}/content-redirect", assets.content_redirect),
        Route("GET", "queues/functions/{fid}", queues.depth),
        Route("GET", "queues/functions/{fid}/versions/{vid}", queues.depth),
        Route("GET", "queues/{rid}/position", queues.position),
    ]


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        nats_url: str,
        authority: AccessAuthority,
        nats_credential: BusCredential = None,
    ) -> None:
        self.settings = settings
        self._access = CachedAccess(authority, settings.auth_cache_ttl_s)
        self._open = OpenInvocations()
        self._revocations = Revocations(authority, self._access, self._open)
        self.bus = RequestBus(
            nats_url,
            settings,
            on_revoked=self._revocations.handle,
            credential=nats_credential,
            on_undeployed=self._on_undeployed,
        )
        self._undeployed: UndeployedQueues | None = None
        self._rate_limiter = RateLimiter()
        self._waker = Waker(settings, self.bus.has_workers)
        self._limit = ConcurrencyLimit(settings.max_concurrent_invocations, settings.overload_retry_after_s)
        self._service: InvocationService | None = None
        self._submissions: Submissions | None = None
        self._router: Router | None = None

    async def start(self) -> None:
        if self._router is not None:
            return
        await self.bus.start()
        stores = self.bus.buckets
        assert stores is not None
        self._undeployed = UndeployedQueues(self.bus, stores)
        signer = UrlSigner(await stores.signing_key())
        s = self.settings
        self._service = InvocationService(
            s,
            access=self._access,
            rate_limiter=self._rate_limiter,
            bus=self.bus,
            waker=self._waker,
            stores=stores,
            signer=signer,
            open_invocations=self._open,
        )
        status = StatusEndpoints(s, access=self._access, stores=stores, signer=signer)
        queues = QueueEndpoints(access=self._access, bus=self.bus, stores=stores)
        assets = AssetEndpoints(s, access=self._access, stores=stores, signer=signer)
        self._submissions = Submissions(self._service, bus=self.bus, stores=stores, status=status)
        self._router = Router(routes(self._service, status, queues, assets, self._submissions, self._limit))

    async def aclose(self) -> None:
        if self._router is None:
            return
        self._router = None
        await self._waker.aclose()
        await self._revocations.aclose()
        if self._undeployed is not None:
            await self._undeployed.aclose()
        await self.bus.aclose()

    def _on_undeployed(self, event: wire.Undeployed) -> None:
        if self._undeployed is not None:  # None before the bus has its buckets: nothing queued yet
            self._undeployed.handle(event)

    @property
    def service(self) -> InvocationService:
        """Every invocation's decisions (the gRPC proxy beside this gateway shares them)."""
        if self._service is None:
            raise errors.UnavailableError("the gateway is starting")
        return self._service

    @property
    def ready(self) -> bool:
        return self._router is not None and self.bus.connected

    # --- ASGI --------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive, send)
        target = direct_target(request.headers, self.settings.host_label)
        if target is None:
            request.send = _with_cors(send)
            routed = observe.route_of(request.method, request.path)
        else:
            routed = ("direct", target[0])
        # log context, span, access line; metrics of an invocation (assets, queues, results: none)
        seen = RequestTelemetry(request, direct=target, counted=routed)
        try:
            await self._answer(request, target)
        finally:
            seen.close()

    async def _answer(self, request: Request, target: tuple[str, str | None] | None) -> None:
        try:
            await self._route(request, target)
        except errors.FnplaneError as exc:
            observe.own_error()
            metrics.count_auth_failure("invocation", exc)
            invocation = target is not None or request.path.startswith(INVOCATION_PREFIXES)
            await send_error(request.send, exc, request.path, invocation=invocation)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except (OSError, errors.FnplaneError, TimeoutError) as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, request: Request, target: tuple[str, str | None] | None) -> None:
        if self._router is None or self._service is None or self._submissions is None:
            raise errors.UnavailableError("the gateway is starting")
        if target is not None:
            with self._limit.hold():
                if submissions.applies(request, direct=True):
                    await self._submissions.direct(request, target[0], target[1])
                else:
                    await invocations.direct(self._service, request, target[0], target[1])
            return
        if request.method == "OPTIONS" and request.path.startswith("/v2/nvcf/"):
            await send_bytes(request.send, 204, b"", CORS_HEADERS)
            return
        resolved = self._router.resolve(request.method, request.path)
        if resolved is None:
            allowed = self._router.allowed(request.path)
            if allowed:  # RFC 9110 15.5.6, as the control API answers a wrong method
                await send_method_not_allowed(request, allowed)
                return
            raise errors.NotFoundError(f"no route for {request.method} {request.path}")
        endpoint, params = resolved
        if request.method == "HEAD":
            request.send = without_body(request.send)
        await endpoint(request, *params)


def _with_cors(send: Send) -> Send:
    """`send` that adds Allow-Origin (and the nvcf-reqid expose header when missing) to the response head."""

    async def send_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            headers.append(ALLOW_ORIGIN)
            if not any(name == EXPOSE[0] for name, _ in headers):
                headers.append(EXPOSE)
            message = {**message, "headers": headers}
        await send(message)

    return send_cors


def create_gateway_app(
    settings: GatewaySettings,
    nats_url: str,
    authority: AccessAuthority,
    nats_credential: BusCredential = None,
) -> Gateway:
    """The gateway as an ASGI app with start()/aclose() (also driven by the ASGI lifespan protocol).

    `nats_credential`: the gateway's own bus credential (None: an open server)."""
    return Gateway(settings, nats_url, authority, nats_credential)
