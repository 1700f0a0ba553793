"""gRPC sessions on the proxy: one per (client connection, credential, function, version), as NVCF
pins them (reference/invocation.md 3.9).

The first call of a key opens the session: it is admitted like an HTTP invocation (scope, sharing,
version choice, rate limit, wake), then its request goes onto the version's work queue. A worker
with a free slot takes it and says where the session's calls go; the proxy confirms, and from then
on every call of the key travels over that worker (calls.py). No worker within `attach_timeout_s`:
the queued request is purged and the call fails DEADLINE_EXCEEDED; a worker that comes later is
refused and frees its slot at once.

A session ends when its client connection closes, after `session_idle_s` without calls, when the
worker ends it or goes silent (its calls fail UNAVAILABLE), when its credential is revoked, or when
the proxy stops. Either way the worker is told, so its slot is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from fnplane.invocation.bus import RequestBus
from fnplane.invocation.exchange import Exchange
from fnplane.invocation.grpc.front import ClientConnection
from fnplane.invocation.grpc.settings import GrpcSettings
from fnplane.invocation.service import InvocationService
from fnplane.shared import errors, metrics, subjects, wire
from fnplane.shared.models.access import AccessGrant, VersionTarget

log = logging.getLogger(__name__)

SessionKey = tuple[int, str, str, str | None]


class Session:
    """One session: the worker holding it, and the calls open on it."""

    def __init__(
        self,
        table: SessionTable,
        key: SessionKey,
        bearer: str,
        grant: AccessGrant,
        target: VersionTarget,
        function_id: str,
    ) -> None:
        self._table = table
        self.bus = self._bus = table.bus
        self.key = key
        self.id = str(uuid.uuid4())
        self._bearer = bearer
        self._grant = grant
        self.target = target
        self._function_id = function_id
        self.exchange = Exchange(self.id, function_id, target.version_id, None)
        # the worker's subject for this session's calls, once one took it
        self.calls_to = ""
        # the calls open on it: their exchanges, to fail them if the session breaks
        self.calls: dict[str, Exchange] = {}
        self.closed = False
        self._idle_since = time.monotonic()
        self._watcher: asyncio.Task[None] | None = None

    # --- as OpenInvocations sees it (revocations.Revocable) ----------------------------------------

    @property
    def grant(self) -> AccessGrant:
        return self._grant

    @property
    def bearer(self) -> str:
        return self._bearer

    @property
    def function_id(self) -> str:
        return self._function_id

    @property
    def version_id(self) -> str:
        return self.target.version_id

    def revoke(self, error: errors.FnplaneError) -> None:
        self._table.spawn(self.close(error))

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self, deadline_s: float | None) -> None:
        """Queue the session and wait until a worker holds it (or fail)."""
        s = self._table.settings
        gateway = self._table.service.settings
        bus = self._bus
        now = time.time()
        envelope = wire.Envelope(
            request_id=self.id,
            function_id=self._function_id,
            version_id=self.target.version_id,
            function_name=self.target.function_name,
            nca_id=self._grant.nca_id,
            subject=self._grant.subject,
            mode=wire.InvocationMode.GRPC,
            method="POST",
            path=self.target.inference_url or "/grpc",
            headers=[],
            reply_to=subjects.gateway_response_inbox(bus.gateway_id, self.id),
            body_from=subjects.gateway_body_inbox(bus.gateway_id, self.id),
            request_time=now,
            poll_s=s.attach_timeout_s,
            expires_at=now + gateway.request_ttl_s,
            invocation_region=gateway.region,
            heartbeat_s=gateway.worker_silence_s / 3,
        )
        bus.open(self.exchange)
        try:
            await bus.publish(envelope, b"")
            attach_s = s.attach_timeout_s if deadline_s is None else min(s.attach_timeout_s, deadline_s)
            accepted = await self._attached(attach_s)
        except BaseException:
            bus.close(self.id)
            with contextlib.suppress(Exception):
                await bus.cancel(self.target.version_id, self.id)
            raise
        self.calls_to = accepted.accept.calls_to
        self.exchange.attempt = accepted.attempt
        await bus.confirm_session(accepted.reply)
        self._table.service.open_invocations.add(self)
        self._watcher = asyncio.create_task(self._watch(), name=f"grpc-session-{self.id}")

    async def _attached(self, timeout_s: float) -> wire.SessionMessage:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        wake_at: float | None = loop.time() + self._table.service.settings.wake_after_s
        while True:
            limit = min(deadline, wake_at) if wake_at is not None else deadline
            try:
                async with asyncio.timeout_at(limit):
                    item = await self.exchange.queue.get()
            except TimeoutError:
                if wake_at is not None and limit == wake_at:
                    self._table.service.wake(self.target.version_id, self._bearer)
                    wake_at = None
                    continue
                raise errors.GatewayTimeoutError("failed to establish link to worker") from None
            if isinstance(item, errors.FnplaneError):
                raise item
            if type(item) is wire.SessionMessage:
                return item
            if type(item) is wire.HeadMessage and item.attempt == wire.PLATFORM_ATTEMPT:
                # no worker will take the session: the version was undeployed (invocation/undeploys.py)
                raise errors.NotFoundError(_problem_detail(item.body))

    async def _watch(self) -> None:
        """While open: keepalives to the worker, its heartbeats and end, the idle limit."""
        s = self._table.settings
        silence = self._table.service.settings.worker_silence_s
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while not self.closed:
            try:
                async with asyncio.timeout(s.session_keepalive_s):
                    item = await self.exchange.queue.get()
            except TimeoutError:
                item = None
            now = loop.time()
            if item is None:
                with contextlib.suppress(Exception):  # a missed keepalive is sent again next turn
                    await self._bus.send(self.calls_to, b"", wire.SESSION_ALIVE)
            elif type(item) is wire.AliveMessage:
                heard = now
            elif type(item) is wire.EndMessage:
                await self._end(errors.UnavailableError(item.error or "the worker ended the session"))
                return
            elif type(item) is wire.SessionMessage:  # a redelivery taken by a second worker
                await self._bus.confirm_session(item.reply, "the session is held by another worker")
            elif isinstance(item, errors.FnplaneError):
                await self.close(item)
                return
            if now - heard > silence:
                await self.close(errors.UnavailableError("the worker holding the session went silent"))
                return
            if not self.calls and time.monotonic() - self._idle_since >= s.session_idle_s:
                await self.close()
                return

    def call_started(self, call_id: str, exchange: Exchange) -> None:
        self.calls[call_id] = exchange

    def call_ended(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        if not self.calls:
            self._idle_since = time.monotonic()

    async def close(self, error: errors.FnplaneError | None = None) -> None:
        """End the session (its open calls fail with `error`) and free the worker's slot."""
        if self.closed:
            return
        if self.calls_to:
            with contextlib.suppress(Exception):
                await self._bus.send(self.calls_to, b"", wire.SESSION_CLOSE)
        await self._end(error or errors.UnavailableError("the session ended"))

    async def _end(self, error: errors.FnplaneError) -> None:
        if self.closed:
            return
        self.closed = True
        self._table.forget(self)
        self._table.service.open_invocations.discard(self)
        self._bus.close(self.id)
        for exchange in list(self.calls.values()):
            exchange.queue.put_nowait(error)
        watcher = self._watcher
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()


class SessionTable:
    """Every session of this proxy, by key and by client connection."""

    def __init__(self, service: InvocationService, bus: RequestBus, settings: GrpcSettings) -> None:
        self.service = service
        self.bus = bus
        self.settings = settings
        self._sessions: dict[SessionKey, Session] = {}
        self._opening: dict[SessionKey, asyncio.Future[Session]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    async def session(
        self,
        connection: ClientConnection,
        bearer: str,
        function_id: str,
        version_id: str | None,
        deadline_s: float | None,
    ) -> Session:
        """The connection's session for this function (and version), opened on its first call."""
        key: SessionKey = (connection.id, bearer, function_id, version_id)
        session = self._sessions.get(key)
        if session is not None and not session.closed:
            return session
        opening = self._opening.get(key)
        if opening is not None:  # a concurrent first call is opening it: share the outcome
            return await asyncio.shield(opening)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        try:
            grant, target = await self.service.admit(bearer, function_id, version_id)
            session = Session(self, key, bearer, grant, target, function_id)
            await session.open(deadline_s)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._opening[key]
        self._sessions[key] = session
        metrics.GRPC_SESSIONS_ACTIVE.inc()
        future.set_result(session)
        return session

    def forget(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
            metrics.GRPC_SESSIONS_ACTIVE.dec()

    def connection_closed(self, connection: ClientConnection) -> None:
        for key, session in list(self._sessions.items()):
            if key[0] == connection.id:
                self.spawn(session.close(errors.UnavailableError("the client closed the connection")))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        await asyncio.gather(
            *(s.close(errors.UnavailableError("the gRPC proxy is stopping")) for s in sessions),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()


def _problem_detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else "the function version was undeployed"
