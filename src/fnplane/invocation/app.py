"""The gateway ASGI application (invocation plane).

    gateway = create_gateway_app(settings, nats_url, authority)
    await gateway.start()        # or let the ASGI lifespan protocol start it
    ...                          # serve: `if is_gateway_request(scope): await gateway(scope, receive, send)`
    await gateway.aclose()       # or lifespan shutdown

It serves direct invocation (Host `{fid}.invocation.{domain}` / `{vid}.{fid}.invocation.{domain}` or the
`function-id` / `function-version-id` headers, any method and path), pexec/exec and their status,
signed large-result downloads, assets and queues. `is_gateway_request(scope)` tells a composing server
which requests are the gateway's. Every FnplaneError becomes problem+json.

Scale-from-zero: when a request arrives for a version whose queue no worker pulls and none holds a
request of (`wake_if_idle`, at once), or when a request has not been picked up after `wake_after_s`
(instances busy or gone), the gateway calls `authority.wake(version_id)` if the authority has such a
coroutine, or POSTs `{control_url}/v1/fnplane/versions/{vid}/wake` with the caller's bearer when
`control_url` is set (at most once per 5 s per version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp

from fnplane.bus.buckets import Buckets
from fnplane.invocation import handlers, queues, status
from fnplane.invocation.access import CachedAccess
from fnplane.invocation.assets import AssetService
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
    send_problem,
)
from fnplane.invocation.rate_limit import RateLimiter
from fnplane.invocation.routing import direct_target, is_gateway_request, is_uuid
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.shared import errors
from fnplane.shared.contracts import AccessAuthority

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
WAKE_INTERVAL_S = 5.0
INVOCATION_PREFIXES = ("/v2/nvcf/pexec/", "/v2/nvcf/exec/")


class Gateway:
    def __init__(self, settings: GatewaySettings, nats_url: str, authority: AccessAuthority) -> None:
        self.settings = settings
        self.authority = authority
        self.access = CachedAccess(authority, settings.auth_cache_ttl_s)
        self.rate_limiter = RateLimiter()
        self.bus = RequestBus(nats_url, settings)
        self.stores: Buckets = None  # type: ignore[assignment]  # set by start()
        self.signer: UrlSigner = None  # type: ignore[assignment]
        self.assets = AssetService(self)
        self._started = False
        self._woken: dict[str, float] = {}
        self._probed: dict[str, float] = {}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._started:
            return
        await self.bus.start()
        assert self.bus.buckets is not None
        self.stores = self.bus.buckets
        self.signer = UrlSigner(await self.stores.signing_key())
        self._started = True

    async def aclose(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.bus.aclose()
        if self._http is not None:
            await self._http.close()

    @property
    def ready(self) -> bool:
        return self._started and self.bus.connected

    # --- scale-from-zero hint ----------------------------------------------------------------------

    def wake_if_idle(self, version_id: str, bearer: str) -> None:
        """Scale from zero at once: wake the version now if no worker pulls its queue or runs its work.

        Costs one JetStream consumer lookup per version per `wake_probe_interval_s` at most, in the
        background; nothing when a wake was just sent or no wake route is configured.
        """
        now = time.monotonic()
        if self._woken.get(version_id, 0.0) > now or self._probed.get(version_id, 0.0) > now:
            return
        if getattr(self.authority, "wake", None) is None and not self.settings.control_url:
            return
        self._probed[version_id] = now + self.settings.wake_probe_interval_s
        self.bus.spawn(self._wake_if_no_workers(version_id, bearer))

    async def _wake_if_no_workers(self, version_id: str, bearer: str) -> None:
        if not await self.bus.has_workers(version_id):
            self.wake_hint(version_id, bearer)

    def wake_hint(self, version_id: str, bearer: str) -> None:
        now = time.monotonic()
        if self._woken.get(version_id, 0.0) > now:
            return
        self._woken[version_id] = now + WAKE_INTERVAL_S
        wake = getattr(self.authority, "wake", None)
        if wake is not None:
            self.bus.spawn(self._call_wake(wake(version_id)))
        elif self.settings.control_url:
            self.bus.spawn(self._post_wake(version_id, bearer))

    async def _call_wake(self, coro: Any) -> None:
        try:
            await asyncio.wait_for(coro, self.settings.wake_timeout_s)
        except (errors.FnplaneError, TimeoutError) as exc:
            log.debug("wake hint failed: %r", exc)

    async def _post_wake(self, version_id: str, bearer: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = f"{self.settings.control_url.rstrip('/')}/v1/fnplane/versions/{version_id}/wake"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._http.post(
                url,
                # aiohttp would label the empty body application/octet-stream, which the API refuses
                headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.settings.wake_timeout_s),
            ) as resp:
                if resp.status >= 400:
                    log.warning("wake hint for version %s answered %d", version_id, resp.status)

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
        try:
            await self._route(request, target)
        except errors.FnplaneError as exc:
            await send_error(request.send, exc, request.path, self._error_headers(request, target))

    def _error_headers(
        self, request: Request, target: tuple[str, str | None] | None
    ) -> list[tuple[bytes, bytes]]:
        """NVCF-STATUS and the CORS expose header also on invocation errors raised before a request id."""
        if target is not None or request.path.startswith(INVOCATION_PREFIXES):
            return [(b"nvcf-status", b"errored"), EXPOSE]
        return []

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
        if not self._started:
            raise errors.UnavailableError("the gateway is starting")
        if target is not None:
            await handlers.direct(self, request, target[0], target[1])
            return
        method = request.method
        # ids in any case, as NVCF parses them as UUIDs (ours are stored lower-case)
        parts = [p.lower() if is_uuid(p) else p for p in request.path.rstrip("/").split("/")[1:]]
        if len(parts) < 3 or parts[0] != "v2" or parts[1] != "nvcf":
            raise errors.NotFoundError(f"no route for {method} {request.path}")
        if method == "OPTIONS":
            await send_bytes(request.send, 204, b"", CORS_HEADERS)
            return
        area, rest = parts[2], parts[3:]
        if area in ("pexec", "exec"):
            await self._route_invoke(request, area, rest)
        elif area == "assets":
            await self._route_assets(request, rest)
        elif area == "queues":
            await self._route_queues(request, rest)
        else:
            raise errors.NotFoundError(f"no route for {method} {request.path}")

    async def _route_invoke(self, request: Request, area: str, rest: list[str]) -> None:
        method = request.method
        if rest and rest[0] == "functions" and method == "POST" and len(rest) in (2, 4):
            function_id = rest[1]
            version_id = rest[3] if len(rest) == 4 and rest[2] == "versions" else None
            if len(rest) == 4 and rest[2] != "versions":
                raise errors.NotFoundError(f"no route for {method} {request.path}")
            if area == "pexec":
                await handlers.pexec(self, request, function_id, version_id)
            else:
                await handlers.exec_(self, request, function_id, version_id)
            return
        if len(rest) == 2 and rest[0] == "status" and method == "GET":
            if area == "pexec":
                await status.pexec_status(self, request, rest[1])
            else:
                await status.exec_status(self, request, rest[1])
            return
        if area == "pexec" and len(rest) == 2 and rest[0] == "results" and method == "GET":
            await status.download_result(self, request, rest[1])
            return
        await self._no_route(request)

    async def _route_assets(self, request: Request, rest: list[str]) -> None:
        method = request.method
        svc = self.assets
        if not rest:
            if method == "POST":
                await svc.create(request)
                return
            if method == "GET":
                await svc.list(request)
                return
        elif len(rest) == 1:
            if method == "GET":
                await svc.get(request, rest[0])
                return
            if method == "DELETE":
                await svc.delete(request, rest[0])
                return
        elif len(rest) == 2:
            if rest[1] == "upload" and method == "PUT":
                await svc.upload(request, rest[0])
                return
            if rest[1] == "content" and method == "GET":
                await svc.content(request, rest[0])
                return
            if rest[1] == "content-redirect" and method == "GET":
                await svc.content_redirect(request, rest[0])
                return
        await self._no_route(request)

    async def _route_queues(self, request: Request, rest: list[str]) -> None:
        if request.method == "GET":
            if len(rest) in (2, 4) and rest[0] == "functions" and (len(rest) == 2 or rest[2] == "versions"):
                await queues.depth(self, request, rest[1], rest[3] if len(rest) == 4 else None)
                return
            if len(rest) == 2 and rest[1] == "position":
                await queues.position(self, request, rest[0])
                return
        await self._no_route(request)

    async def _no_route(self, request: Request) -> None:
        await send_problem(request.send, 404, f"no route for {request.method} {request.path}", request.path)


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


def create_gateway_app(settings: GatewaySettings, nats_url: str, authority: AccessAuthority) -> Gateway:
    """The gateway as an ASGI app with start()/aclose() (also driven by the ASGI lifespan protocol)."""
    return Gateway(settings, nats_url, authority)
