"""The worker's side of the request bus (NATS JetStream); the only worker module that talks to NATS.
Messages: shared/wire.py; streams and buckets: shared/topology.py (ensured by fnplane.bus.topology).

* Pulls (NVCF's utils, reference/invocation.md 6.2): every instance of a version shares one durable
  pull consumer. `top_up(free)` keeps exactly as many messages requested from the server as the
  worker has free slots: `$JS.API.CONSUMER.MSG.NEXT` pull requests (batch = newly free slots, expiring
  after `pull_expires_s`) to one inbox, accounting for each delivered message and each expiry (status
  408), so a request never waits in a worker that has no slot for it.
* Each delivered request reaches the puller as a `Delivery` (envelope decoded, ack/nak/term, the
  keepalive that tells JetStream and the gateway the worker still works on it).
* `ResponseChannel` streams one response to its gateway: head -> chunks -> end, with credits (also
  the response of one call of a gRPC session, ended by its trailer).
* `pull_body()` fetches the rest of a large request body from the gateway, chunk by chunk.
* gRPC sessions (worker/grpc_sessions.py): `announce_session()` tells the proxy where the session's
  calls go, `open_session()` routes the messages of those calls to their session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from fnplane.bus.buckets import Buckets
from fnplane.bus.connection import Client, connect
from fnplane.bus.topology import ensure_consumer, queue_exists
from fnplane.compute.worker.envelopes import Refusal, check_envelope, usable_subject
from fnplane.compute.worker.problems import WORKER_SOURCE, problem
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.shared import errors, subjects, topology, wire
from fnplane.shared.loop import within

log = logging.getLogger(__name__)

# a pull whose expiry status never came (lost in a reconnect) is forgotten this long after it expired
PULL_EXPIRY_GRACE_S = 2.0
# the most body bytes one response message carries (the rest of a larger body follows in chunks)
RESPONSE_PIECE_BYTES = 256 * 1024


class BodyError(Exception):
    """The rest of the request body could not be fetched from the gateway."""


class CreditTimeout(Exception):
    """The gateway stopped granting credit: its client is gone."""


class Delivery:
    """One request message delivered to this worker."""

    __slots__ = ("_alive", "_msg", "attempt", "envelope")

    def __init__(self, msg: Msg, envelope: wire.Envelope) -> None:
        self._msg = msg
        self.envelope = envelope
        self.attempt = msg.metadata.num_delivered or 1
        # built on the first keepalive: most requests end before one is due
        self._alive: dict[str, str] | None = None

    @property
    def inline(self) -> bytes:
        """The first body bytes, carried by the queued message."""
        return self._msg.data

    @property
    def trace(self) -> dict[str, str] | None:
        """The trace context the gateway sent with it (tracing on there), else None."""
        return wire.decode_trace(self._msg.headers)

    async def keepalive(self, nc: Client) -> None:
        """JetStream must not redeliver it yet, and the gateway must not give up on it."""
        await self._msg.in_progress()
        if self._alive is None:
            self._alive = wire.kind_header(wire.Kind.ALIVE, self.attempt)
        await nc.publish(self.envelope.reply_to, b"", headers=self._alive)

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay_s: float | None = None) -> None:
        await self._msg.nak(delay=delay_s)

    async def term(self) -> None:
        await self._msg.term()


class _Pull:
    __slots__ = ("expires_at", "remaining")

    def __init__(self, remaining: int, expires_at: float) -> None:
        self.remaining = remaining
        self.expires_at = expires_at


class ResponseChannel:
    """The response stream of one request to its gateway: head -> chunk* -> end, with credits."""

    def __init__(self, nc: Client, to: str, attempt: int, credit_to: str, settings: WorkerSettings):
        self._nc = nc
        self._to = to
        self._credit_to = credit_to
        self._window = settings.response_window_chunks
        self._credits = asyncio.Semaphore(self._window)
        self._credit_timeout_s = settings.credit_timeout_s
        self._attempt = attempt
        self._chunk = wire.kind_header(wire.Kind.DATA, attempt)
        self._chunk_more = wire.more_header(self._chunk)
        self.head_sent = False

    def grant(self, chunks: int) -> None:
        for _ in range(chunks):
            self._credits.release()

    async def head(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        end: bool = False,
        large_result: bool = False,
        platform_error: bool = False,
    ) -> None:
        # a NATS server closes the connection of a client that publishes more than its max_payload
        # (1 MiB by default, headers included): a larger body (a buffered pexec answer of up to 5 MiB)
        # follows its head in chunks
        rest = b""
        if len(body) > RESPONSE_PIECE_BYTES:
            body, rest = body[:RESPONSE_PIECE_BYTES], body[RESPONSE_PIECE_BYTES:]
        head = wire.Head(
            status,
            headers,
            window=self._window,
            end=end and not rest,
            large_result=large_result,
            platform_error=platform_error,
        )
        self.head_sent = True
        await self._nc.publish(self._to, body, headers=wire.encode_head(head, self._attempt))
        if rest:
            view = memoryview(rest)
            for i in range(0, len(rest), RESPONSE_PIECE_BYTES):
                await self.data(bytes(view[i : i + RESPONSE_PIECE_BYTES]))
            if end:
                await self.end()

    async def data(self, chunk: bytes, *, more: bool = False) -> None:
        """One chunk of the response (`more`: a piece of a gRPC message that goes on in the next)."""
        if self._credits.locked():
            try:
                await within(self._credits.acquire(), self._credit_timeout_s)
            except TimeoutError:
                raise CreditTimeout("the gateway stopped granting credit (client gone)") from None
        else:
            # a credit is there: take it without a timer (once per chunk)
            await self._credits.acquire()
        await self._nc.publish(
            self._to, chunk, reply=self._credit_to, headers=self._chunk_more if more else self._chunk
        )

    async def end(self, error: str | None = None) -> None:
        await self._nc.publish(self._to, b"", headers=wire.encode_end(self._attempt, error))

    async def end_call(self, trailer: wire.GrpcTrailer) -> None:
        """The end of a gRPC call: its status, details and trailing metadata."""
        await self._nc.publish(self._to, b"", headers=wire.encode_grpc_end(self._attempt, trailer))


DeliveryHandler = Callable[[Delivery], Awaitable[None]]
# the messages of one gRPC session's calls, decoded
SessionHandler = Callable[[wire.SessionEvent], None]
# (request id, explicit): explicit cancels (a client's DELETE) stop detached requests too
CancelHandler = Callable[[str, bool], None]


class WorkerBus:
    """The worker's NATS connection for one function version."""

    def __init__(self, nc: Client, version_id: str, worker_id: str, settings: WorkerSettings) -> None:
        self.nc = nc
        self._version_id = version_id
        self._worker_id = worker_id
        self._settings = settings
        self.buckets = Buckets(nc.jetstream(timeout=settings.connect_timeout_s), create_results=False)
        self._pull_subject = subjects.pull_request_subject(version_id)
        self._inbox = subjects.worker_pull_inbox(worker_id)
        self._pulls: collections.deque[_Pull] = collections.deque()
        self._outstanding = 0
        self._channels: dict[str, ResponseChannel] = {}
        self._sessions: dict[str, SessionHandler] = {}
        self._subs: list[object] = []
        # after a reconnect: the server may have come back without its store
        self._check_topology = False
        self.on_pull_state_changed: Callable[[], None] = lambda: None
        # the connection closed for good, not by close_connection(): this worker can no longer work
        self.on_connection_lost: Callable[[], None] = lambda: None
        self._closing = False

    @classmethod
    async def connect(cls, url: str, version_id: str, worker_id: str, settings: WorkerSettings) -> WorkerBus:
        bus: WorkerBus | None = None

        async def reconnected() -> None:
            if bus is not None:
                bus.forget_pulls()

        async def closed() -> None:
            if bus is not None and not bus._closing:
                log.error("the worker's NATS connection was closed: %r", bus.nc.last_error)
                bus.on_connection_lost()

        try:
            nc = await connect(
                url,
                f"fnplane-worker-{worker_id}",
                connect_timeout_s=settings.nats_connect_timeout_s,
                on_reconnected=reconnected,
                on_closed=closed,
                # the file the agent wrote for this instance (never its content in the environment)
                credential=Path(settings.nats_creds) if settings.nats_creds else None,
                inbox_prefix=subjects.worker_inbox_prefix(worker_id),
            )
        except (OSError, TimeoutError, NatsError) as exc:
            raise errors.UnavailableError(f"cannot reach NATS at {url}: {exc!r}") from exc
        bus = cls(nc, version_id, worker_id, settings)
        return bus

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    async def _ensure_topology(self) -> bool:
        """The instances' consumer exists, once the version's queue does (False: no queue yet).

        The queue is the agent's to create before it starts us, and the gateway's on its first publish
        (after a server that lost its store): a worker's credential may not create streams, since one
        could name another version's subjects."""
        s = self._settings
        js = self.nc.jetstream(timeout=s.connect_timeout_s)
        spec = topology.request_queue(self._version_id)
        if not await queue_exists(js, spec.name):
            return False
        await ensure_consumer(js, spec.name, topology.request_consumer(s.ack_wait_s))
        return True

    async def start(self, on_delivery: DeliveryHandler, on_cancel: CancelHandler) -> None:
        """Make sure the queue and its consumer exist, open the buckets, and listen."""
        if not await self._ensure_topology():
            self._check_topology = True  # checked again before each pull
        await self.buckets.open(topology.worker_buckets(), create=False)

        async def deliveries(msg: Msg) -> None:
            await self._on_message(msg, on_delivery)

        async def cancels(msg: Msg) -> None:
            on_cancel(wire.decode_cancel(msg.data), wire.is_explicit_cancel(msg.headers))

        self._subs.append(await self.nc.subscribe(self._inbox, cb=deliveries))
        self._subs.append(await self.nc.subscribe(subjects.cancel_subject(self._version_id), cb=cancels))
        self._subs.append(
            await self.nc.subscribe(subjects.worker_credits(self._worker_id), cb=self._on_credit)
        )
        self._subs.append(
            await self.nc.subscribe(subjects.worker_sessions(self._worker_id), cb=self._on_session_message)
        )
        # the server knows every subscription before the first pull: no cancel or credit is missed
        await self.nc.flush(timeout=max(1, int(self._settings.connect_timeout_s)))

    async def aclose(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await sub.unsubscribe()  # type: ignore[attr-defined]
        self._subs.clear()

    async def close_connection(self) -> None:
        self._closing = True
        # a connection the server already cut ends with a reset while the client drains it
        with contextlib.suppress(TimeoutError, NatsError, OSError):
            await within(self.nc.close(), 5.0)

    # --- pulls -------------------------------------------------------------------------------------

    def forget_pulls(self) -> None:
        """After a reconnect: the pull requests the server held are gone; check the queue, ask again."""
        self._pulls.clear()
        self._outstanding = 0
        self._check_topology = True
        self.on_pull_state_changed()

    def forget_expired_pulls(self) -> None:
        now = time.monotonic()
        while self._pulls and self._pulls[0].expires_at + PULL_EXPIRY_GRACE_S < now:
            self._outstanding -= self._pulls.popleft().remaining

    async def top_up(self, free: int) -> None:
        """Ask the server for as many messages as there are free slots not yet offered."""
        if self._check_topology and self.nc.is_connected:
            try:
                self._check_topology = not await self._ensure_topology()
            except (TimeoutError, NatsError) as exc:  # retried on the pull loop's next turn
                log.warning("cannot check the request queue after a reconnect: %r", exc)
        want = free - self._outstanding
        if want <= 0 or not self.nc.is_connected or self._check_topology:
            return
        s = self._settings
        # counted before the publish: a concurrent top-up while this one waits must not ask again
        pull = _Pull(want, time.monotonic() + s.pull_expires_s)
        self._pulls.append(pull)
        self._outstanding += want
        request = b'{"batch":%d,"expires":%d}' % (want, int(s.pull_expires_s * 1e9))
        try:
            await self.nc.publish(self._pull_subject, request, reply=self._inbox)
        except Exception:  # supervisor: a failed publish is retried on the pull loop's next turn
            log.exception("pull request failed")
            with contextlib.suppress(ValueError):
                self._pulls.remove(pull)
                self._outstanding -= pull.remaining
            self.on_pull_state_changed()

    def _take_one(self) -> None:
        if self._pulls:
            head = self._pulls[0]
            head.remaining -= 1
            self._outstanding -= 1
            if head.remaining <= 0:
                self._pulls.popleft()

    async def _on_message(self, msg: Msg, on_delivery: DeliveryHandler) -> None:
        headers = msg.headers
        if not msg.data and headers and wire.HDR_STATUS in headers:
            status = headers[wire.HDR_STATUS]
            if status == "100":
                return  # idle heartbeat
            if status in ("408", "404") and self._pulls:
                pull = self._pulls.popleft()
                self._outstanding -= pull.remaining
            elif status == "409":
                self._pulls.clear()
                self._outstanding = 0
            self.on_pull_state_changed()
            return
        self._take_one()
        try:
            envelope = wire.decode_request(headers)
        except wire.WireError as exc:
            # nobody to answer: no reply subject can be trusted from a message that does not decode
            log.warning("dropping request message %s: %s", msg.subject, exc)
            await msg.ack()
            return
        refusal = check_envelope(envelope, msg.subject, self._version_id)
        if refusal is not None:
            await self._refuse(msg, envelope, refusal)
            return
        await on_delivery(Delivery(msg, envelope))

    async def _refuse(self, msg: Msg, envelope: wire.Envelope, refusal: Refusal) -> None:
        """Answer a malformed request 400 with its utils error code, and ack it: it never runs."""
        log.warning("refusing request message %s: %s (%d)", msg.subject, refusal.detail, refusal.error_code)
        if usable_subject(envelope.reply_to):
            headers, body = problem(400, refusal.detail, WORKER_SOURCE, refusal.error_code)
            attempt = msg.metadata.num_delivered or 1
            head = wire.Head(400, headers, end=True)
            with contextlib.suppress(NatsError):  # the answer is a courtesy; the ack is what counts
                await self.nc.publish(envelope.reply_to, body, headers=wire.encode_head(head, attempt))
        await msg.ack()

    # --- responses ---------------------------------------------------------------------------------

    def open_channel(self, envelope: wire.Envelope, attempt: int) -> ResponseChannel:
        rid = envelope.request_id
        return self._open_channel(rid, envelope.reply_to, attempt)

    def _open_channel(self, stream_id: str, to: str, attempt: int) -> ResponseChannel:
        credit_to = subjects.worker_credit_inbox(self._worker_id, stream_id)
        channel = ResponseChannel(self.nc, to, attempt, credit_to, self._settings)
        self._channels[stream_id] = channel
        return channel

    def close_channel(self, request_id: str) -> None:
        self._channels.pop(request_id, None)

    async def _on_credit(self, msg: Msg) -> None:
        channel = self._channels.get(subjects.last_token(msg.subject))
        if channel is not None:
            channel.grant(wire.decode_credit(msg.data))

    async def pull_body(self, envelope: wire.Envelope, offset: int) -> wire.BodyChunk:
        """The next chunk of the request body after `offset` bytes."""
        try:
            reply = await self.nc.request(
                envelope.body_from,
                b"",
                timeout=self._settings.body_pull_timeout_s,
                # the gateway answers within half the timeout even when its client sent nothing
                # new (an empty chunk: pull again), so a slow client is not a 500 "did not answer"
                headers=wire.encode_body_pull(offset, self._settings.body_pull_timeout_s / 2),
            )
            return wire.decode_body_reply(reply.headers, reply.data)
        except TimeoutError:
            raise BodyError("request body unavailable: the gateway holding it did not answer") from None
        except NatsError as exc:
            raise BodyError(f"request body unavailable: {exc}") from exc
        except wire.WireError as exc:
            raise BodyError(exc.detail) from None

    # --- gRPC sessions -----------------------------------------------------------------------------

    async def announce_session(self, envelope: wire.Envelope, attempt: int) -> str | None:
        """Tell the proxy this worker holds the session and where its calls go; None once the proxy
        confirmed, else why it refused (its client gave up waiting)."""
        accept = wire.SessionAccept(subjects.worker_session_inbox(self._worker_id, envelope.request_id))
        try:
            reply = await self.nc.request(
                envelope.reply_to,
                b"",
                timeout=self._settings.session_announce_timeout_s,
                headers=wire.encode_session_accept(accept, attempt),
            )
        except (TimeoutError, NatsError) as exc:
            return f"the proxy did not confirm the session: {exc!r}"
        return wire.session_refusal(reply.headers)

    def open_session(self, session_id: str, handler: SessionHandler) -> None:
        self._sessions[session_id] = handler

    def close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def open_call(self, call: wire.GrpcCall, attempt: int) -> ResponseChannel:
        """The response stream of one call of a session, to the proxy's inbox of that call."""
        return self._open_channel(call.call_id, call.reply_to, attempt)

    async def grant_call_credit(self, call: wire.GrpcCall, attempt: int, chunks: int) -> None:
        """The proxy may send `chunks` more request messages of this call."""
        headers, data = wire.encode_credit_message(attempt, chunks)
        await self.nc.publish(call.reply_to, data, headers=headers)

    async def end_session(self, envelope: wire.Envelope, attempt: int, error: str) -> None:
        """The worker no longer holds the session (the proxy fails the calls still open on it)."""
        with contextlib.suppress(NatsError):
            await self.nc.publish(envelope.reply_to, b"", headers=wire.encode_end(attempt, error))

    async def _on_session_message(self, msg: Msg) -> None:
        handler = self._sessions.get(subjects.last_token(msg.subject))
        if handler is None:
            return
        try:
            event = wire.decode_session_event(msg.headers, msg.data)
        except wire.WireError as exc:
            log.warning("dropping a message of session %s: %s", subjects.last_token(msg.subject), exc)
            return
        handler(event)
