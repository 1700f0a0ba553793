"""One invocation through the request bus, shared by pexec, exec and direct invocation.

    begin()   read the inline body, queue the request, wait (poll + grace) for the worker's head
    chunks()  the rest of the body as the worker streams it, granting a credit per chunk sent on
    finish()  forget the exchange; cancel the request on the worker if the client went away

No worker answer within the poll window plus grace -> 504 (empty body, `nvcf-status: errored`) and the
queued message is purged; a client disconnect before the end -> cancel broadcast + purge.

From `begin()` to `finish()` an invocation is in the gateway's OpenInvocations (revocations.py): a
revocation of its credential `revoke()`s it, which ends it like a worker error does (the waiting
request gets the 401/403/404 problem, a streaming answer breaks off, the work is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fnplane.invocation import observe
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.exchange import DISCONNECTED, BodyReader, Exchange, watch_disconnect
from fnplane.invocation.http import Request
from fnplane.invocation.revocations import OpenInvocations
from fnplane.invocation.routing import forwarded_headers
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.waker import Waker
from fnplane.shared import errors, metrics, subjects, wire
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.models.invocation import MAX_DIRECT_RESPONSE_BYTES
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem_for, problem_headers
from fnplane.telemetry import logs

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client disconnected; nothing more can be sent to it."""


class _PublishFailed:
    __slots__ = ("error",)

    def __init__(self, error: errors.FnplaneError) -> None:
        self.error = error


class Head:
    """The start of the answer to the client: status, headers, first body bytes, and whether that is all."""

    __slots__ = ("body", "end", "headers", "large_result", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        end: bool = True,
        large_result: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.end = end
        # the result is this request's zip in the object store (302 with a signed Location)
        self.large_result = large_result


@dataclass(frozen=True, slots=True)
class Call:
    """What the function is asked: the chosen version's request, as the worker will make it."""

    grant: AccessGrant
    target: VersionTarget
    function_id: str
    mode: wire.InvocationMode
    method: str
    # path and query as the function sees them
    path: str
    poll_s: float
    assets: list[wire.AssetReference] = field(default_factory=list)
    # the whole body, already read (exec); None: streamed from the client
    body: bytes | None = None


def build_envelope(
    bus: RequestBus,
    settings: GatewaySettings,
    request: Request,
    call: Call,
    request_id: str,
    started: float,
    *,
    length: int | None,
    more: bool,
    detached: bool = False,
    idempotency: str | None = None,
) -> wire.Envelope:
    """The queued request of `call`, accepted at `started` (epoch seconds)."""
    return wire.Envelope(
        request_id=request_id,
        function_id=call.function_id,
        version_id=call.target.version_id,
        function_name=call.target.function_name,
        nca_id=call.grant.nca_id,
        subject=call.grant.subject,
        mode=call.mode,
        method=call.method,
        path=call.path,
        headers=forwarded_headers(request.raw_headers),
        reply_to=subjects.gateway_response_inbox(bus.gateway_id, request_id),
        body_from=subjects.gateway_body_inbox(bus.gateway_id, request_id),
        request_time=started,
        poll_s=call.poll_s,
        # nobody waits for a result longer than a queued request may live (NVCF: an hour)
        expires_at=started + settings.request_ttl_s,
        body_length=length,
        body_more=more,
        assets=call.assets,
        invocation_region=settings.region,
        max_response_bytes=MAX_DIRECT_RESPONSE_BYTES,
        # the worker's own interval may be set longer than this gateway's silence timeout
        heartbeat_s=settings.worker_silence_s / 3,
        detached=detached,
        idempotency=idempotency,
    )


class Invocation:
    def __init__(
        self,
        bus: RequestBus,
        settings: GatewaySettings,
        waker: Waker,
        open_invocations: OpenInvocations,
        request: Request,
        call: Call,
    ) -> None:
        self._bus = bus
        self._open = open_invocations
        self._settings = settings
        self._waker = waker
        self.request = request
        self.request_id = str(uuid.uuid4())
        self.version_id = call.target.version_id
        self._grant = call.grant
        self._function_id = call.function_id
        self.poll_s = call.poll_s
        self._call = call
        self._fixed_body = call.body
        self._exchange: Exchange | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._finished = False
        self._deadline_at = 0.0
        logs.annotate(
            request_id=self.request_id,
            function_id=call.function_id,
            function_version_id=self.version_id,
            account=call.grant.nca_id,
        )

    # --- as OpenInvocations sees it (revocations.Revocable) ----------------------------------------

    @property
    def grant(self) -> AccessGrant:
        return self._grant

    @property
    def bearer(self) -> str:
        return self.request.bearer()

    @property
    def function_id(self) -> str:
        return self._function_id

    def revoke(self, error: errors.FnplaneError) -> None:
        """The credential may no longer do this: end the invocation with `error`."""
        if not self._finished and self._exchange is not None:
            self._exchange.queue.put_nowait(error)

    def _problem(self, error: errors.FnplaneError) -> Head:
        observe.own_error()
        status, doc = problem_for(error, self.request.path)
        headers = [("content-type", PROBLEM_CONTENT_TYPE), *problem_headers(error)]
        return Head(status, headers, json.dumps(doc).encode())

    async def begin(self) -> Head:
        s = self._settings
        bus = self._bus
        started = time.time()
        length: int | None
        if self._fixed_body is not None:
            body_reader = None
            inline, more, length = self._fixed_body, False, len(self._fixed_body)
        else:
            cl = self.request.headers.get("content-length")
            length = int(cl) if cl and cl.isdigit() else None
            h2 = str(self.request.scope.get("http_version", "1.1")).startswith("2")
            body_reader = BodyReader(
                self.request.receive,
                s.max_request_body_bytes,
                length,
                spool_memory_bytes=s.body_spool_memory_bytes if h2 else -1,
            )
            inline, eof = await body_reader.read(s.inline_body_bytes)
            more = not eof
            if not more:
                length = len(inline)
        exchange = Exchange(self.request_id, self._function_id, self.version_id, body_reader)
        self._exchange = exchange
        envelope = build_envelope(
            bus, s, self.request, self._call, self.request_id, started, length=length, more=more
        )
        bus.open(exchange)
        self._open.add(self)
        # the JetStream ack is awaited beside the response, not before it: the worker usually has the
        # request by the time the ack arrives, and a refused publish (429) still ends up in the queue
        bus.spawn(self._publish(bus, envelope, inline, exchange))
        loop = asyncio.get_running_loop()
        self._deadline_at = loop.time() + self.poll_s + s.poll_grace_s - (time.time() - started)
        wake_at: float | None = loop.time() + s.wake_after_s
        # most answers come back within a few milliseconds: the task that watches for the client going
        # away (one more task and one more pending ASGI receive per request) starts only after this
        watch_at: float | None = loop.time() + s.disconnect_watch_after_s
        while True:
            limit = min(t for t in (wake_at, watch_at, self._deadline_at) if t is not None)
            try:
                async with asyncio.timeout_at(limit):
                    item = await exchange.queue.get()
            except TimeoutError:
                if watch_at is not None and limit == watch_at:
                    self._watch()
                    watch_at = None
                    continue
                if wake_at is not None and limit == wake_at and limit < self._deadline_at:
                    # still not picked up: maybe no instance runs (scale from zero)
                    self._waker.wake(self.version_id, self.request.bearer())
                    wake_at = None
                    continue
                await self.abandon()
                observe.own_error()
                return Head(504, [], b"")
            if item == DISCONNECTED:
                await self.abandon()
                raise ClientGone
            if isinstance(item, _PublishFailed):
                self.finish()
                return self._problem(item.error)
            if isinstance(item, errors.FnplaneError):
                await self.abandon()
                return self._problem(item)
            if type(item) is not wire.HeadMessage:
                continue  # heartbeats, stray messages of an earlier attempt
            exchange.attempt = item.attempt
            head = item.head
            woken_at = self._waker.answered(self.version_id)
            if woken_at is not None:  # the first answer since the version was woken from zero
                metrics.COLD_START.labels("wake").observe(time.time() - woken_at)
            if head.status == 202 or head.large_result:
                # the client will poll or download by request id, at any gateway: note its version
                await self._remember_version()
            exchange.credit_batch = wire.credit_batch(head.window)
            if head.platform_error:
                observe.own_error()
            if head.end:
                self.finish()
            return Head(head.status, head.headers, item.body, head.end, head.large_result)

    async def _remember_version(self) -> None:
        buckets = self._bus.buckets
        assert buckets is not None
        try:
            await buckets.remember_version(self.request_id, self.version_id)
        except errors.UnavailableError as exc:
            # the worker goes on; only a status poll at another moment may then answer 404
            log.warning("request %s: %s", self.request_id, exc.detail)

    @staticmethod
    async def _publish(bus: RequestBus, envelope: wire.Envelope, inline: bytes, exchange: Exchange) -> None:
        try:
            await bus.publish(envelope, inline)
        except errors.FnplaneError as exc:
            exchange.queue.put_nowait(_PublishFailed(exc))
        except Exception as exc:  # whatever broke, the caller waiting for this request hears of it
            log.exception("request %s: queueing failed", envelope.request_id)
            exchange.queue.put_nowait(
                _PublishFailed(errors.UnavailableError(f"could not queue the request: {exc!r}"))
            )

    def _watch(self) -> None:
        """Start watching for the client going away (once)."""
        if self._watcher is None and not self._finished and self._exchange is not None:
            self._watcher = asyncio.create_task(watch_disconnect(self._exchange, self.request.receive))

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks after the head; raises ClientGone / errors.UnavailableError when it breaks off."""
        exchange = self._exchange
        assert exchange is not None
        self._watch()
        bus = self._bus
        silence = self._settings.worker_silence_s
        sent = False
        ungranted = 0
        while True:
            if sent:  # the last chunk went to the client: it earns its credit
                ungranted += 1
                if ungranted >= exchange.credit_batch:
                    await bus.grant_credit(exchange, ungranted)
                    ungranted = 0
                sent = False
            try:
                if exchange.queue.empty():
                    async with asyncio.timeout(silence):
                        item = await exchange.queue.get()
                else:
                    item = exchange.queue.get_nowait()  # already here: no timer to arm and cancel
            except TimeoutError:
                await self.abandon()
                raise errors.UnavailableError(
                    "the worker went silent in the middle of the response"
                ) from None
            if item == DISCONNECTED:
                await self.abandon()
                raise ClientGone
            if isinstance(item, errors.FnplaneError):
                await self.abandon()
                raise item
            if item.attempt != exchange.attempt:
                continue
            if type(item) is wire.ChunkMessage:
                sent = True
                yield item.data
                continue
            if type(item) is wire.EndMessage:
                self.finish()
                if item.error is not None:
                    raise errors.UnavailableError(item.error)
                return

    async def abandon(self) -> None:
        """The client will not get (the rest of) this answer: stop the work wherever it is."""
        if self._finished:
            return
        self.finish()
        await self._bus.cancel(self.version_id, self.request_id)

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._bus.close(self.request_id)
        if self._exchange is not None and self._exchange.body is not None:
            self._exchange.body.close()
        self._open.discard(self)
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()

    async def aclose(self, *, client_gone: bool = False) -> None:
        if client_gone:
            await self.abandon()
        else:
            self.finish()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._watcher}, timeout=1.0)
