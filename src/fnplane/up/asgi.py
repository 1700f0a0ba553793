"""One ASGI application on the one HTTP port: gateway, control API and `GET /health`.

Routing: a request the gateway claims (`fnplane.invocation.is_gateway_request(scope)`: invocation
paths, `Host: <fid>.invocation.<domain>`, `function-id` headers) goes to the gateway, even for the path
`/health` (a function may have one); otherwise `/health` is answered here, and everything else goes to
the control app. A role run alone (`fnplane control`, `fnplane gateway`) has one of the two apps: a
request for the missing one is answered 404.

Granian serves this app without ASGI lifespan events (interface `asginl`); the supervisor drives each
inner app's lifespan with `Lifespan` and hands each request the lifespan state of the app it goes to.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fnplane.shared.asgi import ASGIApp, BodyGuard, Message, Receive, Scope, Send, may_have_body, send_error
from fnplane.shared.loop import within
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem
from fnplane.up.limits import CredentialLimiter, credential_key

logger = logging.getLogger(__name__)

__all__ = ["ASGIApp", "Lifespan", "LifespanError", "PlatformApp", "RequestLimits"]

HealthCheck = Callable[[], Awaitable[dict[str, str]]]


class LifespanError(RuntimeError):
    pass


class Lifespan:
    """Drives the ASGI lifespan protocol of one app: `await startup()`, later `await shutdown()`."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # an app without lifespan support raises on the scope type
            self._supported = False
            await self._from_app.put({"type": "lifespan.unsupported", "message": repr(error)})

    async def _exchange(self, message: Message, timeout_s: float) -> Message:
        await self._to_app.put(message)
        return await within(self._from_app.get(), timeout_s)

    async def startup(self, timeout_s: float) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lifespan-{self.name}")
        reply = await self._exchange({"type": "lifespan.startup"}, timeout_s)
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanError(f"{self.name} failed to start: {reply.get('message', '')}")
        if reply["type"] == "lifespan.unsupported":
            logger.debug("%s has no lifespan: %s", self.name, reply.get("message"))

    async def shutdown(self, timeout_s: float) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        try:
            if self._supported and not task.done():
                reply = await self._exchange({"type": "lifespan.shutdown"}, timeout_s)
                if reply["type"] == "lifespan.shutdown.failed":
                    logger.error("%s failed to shut down: %s", self.name, reply.get("message", ""))
            await within(task, timeout_s)
        except TimeoutError:
            logger.error("%s did not shut down within %.1f s", self.name, timeout_s)
            task.cancel()


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Per-credential concurrency of each app and the body-idle timeout (`up/limits.py`); the values
    and their defaults are `UpSettings`'."""

    api_per_credential: int
    gateway_per_credential: int
    body_idle_timeout_s: float


class PlatformApp:
    """The composed ASGI app; `draining` makes new invocations and health answer 503."""

    def __init__(
        self,
        control: Lifespan | None,
        health: HealthCheck,
        gateway: Lifespan | None,
        is_gateway_request: Callable[[Scope], bool],
        limits: RequestLimits,
        facts: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self._control = control
        # what /health reports besides its checks (e.g. `isolation`: how functions are sandboxed)
        self._facts = facts
        self._gateway = gateway
        self._is_gateway_request = is_gateway_request
        self._health = health
        self._api_limiter = CredentialLimiter(limits.api_per_credential, "API")
        self._gateway_limiter = CredentialLimiter(limits.gateway_per_credential, "invocation")
        self._idle_s = limits.body_idle_timeout_s
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        if self._gateway is not None and self._is_gateway_request(scope):
            if self.draining:
                await _send_problem(send, 503, "the platform is shutting down", scope.get("path", ""))
                return
            await self._call_tracked(self._gateway, scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("path") == "/health":
            await self._answer_health(scope, send)
            return
        if self._control is None:
            if scope["type"] == "http":
                detail = "not found: this is a gateway; the control API is served by `fnplane control`"
                await _send_problem(send, 404, detail, scope.get("path", ""))
            return
        await self._call(self._control, scope, receive, send)

    async def _call(self, target: Lifespan, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        scope["state"] = dict(target.state)
        if scope["type"] != "http":
            await target.app(scope, receive, send)
            return
        limiter = self._gateway_limiter if target is self._gateway else self._api_limiter
        key = credential_key(scope)
        if not limiter.acquire(key):
            await send_error(send, limiter.refusal(), scope.get("path", ""))
            return
        try:
            if may_have_body(scope):
                guard = BodyGuard(
                    receive,
                    send,
                    scope.get("path", ""),
                    idle_timeout_s=self._idle_s,
                    close_if_unread=str(scope.get("http_version", "1.1")).startswith("1"),
                )
                receive, send = guard.receive, guard.send
            await target.app(scope, receive, send)
        finally:
            limiter.release(key)

    async def _call_tracked(self, target: Lifespan, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._call(target, scope, receive, send)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drain(self, timeout_s: float) -> int:
        """Refuse new invocations and wait up to `timeout_s` for running ones; returns how many remain."""
        self.draining = True
        try:
            await within(self._idle.wait(), timeout_s)
        except TimeoutError:
            pass
        return self._in_flight

    async def _answer_health(self, scope: Scope, send: Send) -> None:
        checks = await self._health()
        failing = {name: state for name, state in checks.items() if state != "ok"}
        if self.draining:
            failing["platform"] = "shutting down"
        if not failing:
            body = {"status": "ok", "checks": checks, **self._facts()}
            await _send_json(send, 200, body, "application/json")
            return
        detail = "not ready: " + ", ".join(f"{name} ({state})" for name, state in sorted(failing.items()))
        document = problem(503, detail, scope.get("path", "/health"))
        document["checks"] = checks
        document.update(self._facts())
        await _send_json(send, 503, document, PROBLEM_CONTENT_TYPE)


async def _send_json(send: Send, status: int, body: dict[str, Any], content_type: str) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _send_problem(send: Send, status: int, detail: str, instance: str) -> None:
    await _send_json(send, status, problem(status, detail, instance), PROBLEM_CONTENT_TYPE)
