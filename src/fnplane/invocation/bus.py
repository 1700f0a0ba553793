"""The gateway's side of the request bus (NATS JetStream); the only gateway module that talks to NATS.
Messages: shared/wire.py; streams and buckets: shared/topology.py.

* `publish()` puts a request on its version's WorkQueue stream (created on first use), de-duplicated by
  `Nats-Msg-Id`; "maximum messages exceeded" -> TooManyRequestsError (429) with a Retry-After from
  the queue's measured drain rate (backpressure.py).
* One subscription receives the response streams of every request of this gateway and routes each
  message to its `Exchange`; another serves request-body chunks to workers.
* `cancel()` broadcasts the request id to the version's workers and purges the queued message
  (`explicit`: a client's DELETE, which stops a detached request too).
* `queue_depth()` / `queue_position()` read the stream and its consumer.
* gRPC sessions (invocation/grpc/): a session request is published like a request; the worker's
  answer (SessionMessage) is confirmed with `confirm_session()`, a call's messages go to the worker
  with `send()`, its credits reach the call's `Exchange.on_credit` as they arrive.
* Revocations (`subjects.CREDENTIALS_REVOKED`, shared/revocations.py) go to `on_revoked`; after a
  reconnect it gets `revocations.EVERYTHING` (what was published meanwhile is lost on core NATS).
* Undeploy notices (`subjects.VERSIONS_UNDEPLOYED`) go to `on_undeployed`, which takes the version's
  never-delivered requests off its queue (`take_undelivered()`) and answers them (`answer()`).
* A queued request whose message left its queue while no answer reached this gateway lost that
  answer (a worker sent it while this gateway was not subscribed, or a NATS node died with it on the
  way): it gets a 503 at once instead of waiting out its poll window. Checked for every waiting
  request after a reconnect, and for each request still without a head `lost_answer_check_after_s`
  after it was queued, then at doubling intervals (`_watch_lost_answers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.errors import ServiceUnavailableError as JsServiceUnavailableError

from fnplane.bus.buckets import Buckets
from fnplane.bus.connection import BusCredential, Client, connect
from fnplane.bus.topology import ensure_queue
from fnplane.invocation.backpressure import DrainMeter, QueueProgress
from fnplane.invocation.exchange import DISCONNECTED, Exchange
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import errors, revocations, subjects, topology, wire
from fnplane.shared.loop import within
from fnplane.shared.revocations import CredentialsRevoked
from fnplane.telemetry import tracing

log = logging.getLogger(__name__)

T = TypeVar("T")

# how often waiting requests are looked at for a lost answer, and how long a head may trail the ack
LOST_ANSWER_SWEEP_S = 1.0
LOST_ANSWER_GRACE_S = 0.5
# a queue position lists the holes of the version's stream only up to this many (about 8 bytes each in
# the server's answer, which must fit one message)
MAX_HOLES_LISTED = 50_000

# JetStream error codes (nats-server errors.json)
ERR_MAX_MESSAGES = 10077  # maximum messages exceeded
ERR_MAX_MESSAGES_PER_SUBJECT = 10164  # maximum messages per subject exceeded (a duplicate)


class RequestBus:
    def __init__(
        self,
        nats_url: str,
        settings: GatewaySettings,
        on_revoked: Callable[[CredentialsRevoked], None] | None = None,
        credential: BusCredential = None,
        on_undeployed: Callable[[wire.Undeployed], None] | None = None,
    ) -> None:
        self._url = nats_url
        self._credential = credential
        self._settings = settings
        self._on_revoked = on_revoked
        self._on_undeployed = on_undeployed
        self.gateway_id = settings.gateway_id or uuid.uuid4().hex[:12]
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.buckets: Buckets | None = None
        self._exchanges: dict[str, Exchange] = {}
        # request id -> the publish waiting for JetStream's answer on this gateway's ack inbox
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._known_streams: set[str] = set()
        # version id -> function id of every version this gateway has queued to (its queue-depth gauge)
        self.queued_versions: dict[str, str] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.drain = DrainMeter(self.queue_progress, settings.queue_full_retry_after_max_s)

    async def start(self) -> None:
        s = self._settings
        self.nc = await connect(
            self._url,
            f"fnplane-gateway-{self.gateway_id}",
            connect_timeout_s=s.nats_connect_timeout_s,
            reconnect_wait_s=s.nats_reconnect_wait_s,
            on_reconnected=self._on_reconnected,
            credential=self._credential,
        )
        self.js = self.nc.jetstream(timeout=s.publish_timeout_s)
        # the gateway owns the topology: it creates the buckets (and each version's queue on first use)
        self.buckets = Buckets(self.js)
        await self.buckets.open(
            topology.buckets(
                status_ttl_s=s.status_ttl_s,
                object_ttl_s=s.object_ttl_s,
                status_max_bytes=s.status_bucket_max_bytes,
                objects_max_bytes=s.object_store_max_bytes,
            )
            + topology.gateway_buckets(idempotency_ttl_s=s.idempotency_ttl_s),
            create=True,
        )
        await self.nc.subscribe(subjects.gateway_responses(self.gateway_id), cb=self._on_response)
        await self.nc.subscribe(subjects.gateway_bodies(self.gateway_id), cb=self._on_body_pull)
        await self.nc.subscribe(subjects.gateway_acks(self.gateway_id), cb=self._on_ack)
        await self.nc.subscribe(subjects.LOCATE_SUBJECT, cb=self._on_locate)
        if self._on_revoked is not None:
            on_revocation = _broadcast(revocations.decode, self._on_revoked, "a revocation message")
            await self.nc.subscribe(subjects.CREDENTIALS_REVOKED, cb=on_revocation)
        if self._on_undeployed is not None:
            on_undeploy = _broadcast(wire.decode_undeployed, self._on_undeployed, "an undeploy notice")
            await self.nc.subscribe(subjects.VERSIONS_UNDEPLOYED, cb=on_undeploy)
        self.spawn(self._watch_lost_answers())

    async def _on_reconnected(self) -> None:
        self._known_streams.clear()  # a server that came back without its store lost them
        if self._on_revoked is not None:
            # revocations published while we were away are lost: forget and re-check everything
            self._on_revoked(revocations.EVERYTHING)
        self.spawn(self._answer_lost_requests())

    async def _answer_lost_requests(self) -> None:
        """After a reconnect: every request still waiting for its head is checked at once."""
        waiting = [e for e in self._exchanges.values() if self._awaits_head(e)]
        await asyncio.gather(*(self._answer_if_lost(e) for e in waiting))

    async def _watch_lost_answers(self) -> None:
        """Each request without a head `lost_answer_check_after_s` after it was queued is checked, then
        again after twice as long, and so on: a handful of reads for a request that runs long."""
        while True:
            await asyncio.sleep(LOST_ANSWER_SWEEP_S)
            now = time.monotonic()
            due = [e for e in self._exchanges.values() if self._awaits_head(e) and e.check_at <= now]
            for exchange in due:
                exchange.check_every *= 2
                exchange.check_at = now + exchange.check_every
            if due:
                # one check failing (the connection closing) must not end the watch
                await asyncio.gather(*(self._answer_if_lost(e) for e in due), return_exceptions=True)

    @staticmethod
    def _awaits_head(exchange: Exchange) -> bool:
        return exchange.queued and exchange.attempt is None and exchange.queue.empty()

    async def _answer_if_lost(self, exchange: Exchange) -> None:
        """The request's message is gone from the queue and no head came: the answer was lost.

        Workers ack a request after its last response message, and core NATS does not keep messages for
        a subscriber that is not there. A head still on its way (through another node of a cluster than
        the ack) gets `LOST_ANSWER_GRACE_S` to arrive before the caller is answered.
        """
        assert self.js is not None
        if time.monotonic() - exchange.queued_at >= self._settings.request_ttl_s:
            return  # it may have expired unpicked (the queue's max age): that ends in a 504
        subject = subjects.request_subject(exchange.version_id, exchange.request_id)
        try:
            await self.js.get_last_msg(subjects.request_stream(exchange.version_id), subject)
            return  # still queued, or a worker still holds it
        except JsNotFoundError:
            pass
        except (TimeoutError, NatsError) as exc:
            log.warning("request %s not checked for a lost answer: %r", exchange.request_id, exc)
            return
        await asyncio.sleep(LOST_ANSWER_GRACE_S)
        if self._awaits_head(exchange) and self.holds(exchange.request_id) is exchange:
            log.warning("request %s: its answer was lost on the bus", exchange.request_id)
            exchange.queue.put_nowait(
                errors.UnavailableError(
                    "the request bus was interrupted after a worker took the request; its answer "
                    "was lost, retry the request"
                )
            )

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        nc = self.nc
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await within(nc.drain(), timeout_s=5.0)
            if not nc.is_closed:
                # no drain without a connection (the server is gone): close, or its reconnect loop
                # would go on after the gateway stopped
                with contextlib.suppress(NatsError, asyncio.TimeoutError, OSError):
                    await within(nc.close(), timeout_s=5.0)
        self.nc = None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- exchanges ---------------------------------------------------------------------------------

    def open(self, exchange: Exchange) -> None:
        self._exchanges[exchange.request_id] = exchange

    def close(self, request_id: str) -> None:
        self._exchanges.pop(request_id, None)

    def holds(self, request_id: str) -> Exchange | None:
        return self._exchanges.get(request_id)

    async def _on_response(self, msg: Msg) -> None:
        exchange = self._exchanges.get(subjects.last_token(msg.subject))
        if exchange is None:
            if msg.reply:  # a worker asking about a gRPC session nobody waits for any more
                await self._reply(msg, wire.encode_session_refusal("no such session"), b"")
            return
        try:
            message = wire.decode_response(msg.headers, msg.data)
        except wire.WireError as exc:
            log.warning("dropping a response message of request %s: %s", exchange.request_id, exc)
            return
        kind = type(message)
        if kind is wire.ChunkMessage:
            exchange.credit_to = msg.reply
        elif kind is wire.CreditMessage:
            if exchange.on_credit is not None:
                exchange.on_credit(message.chunks)  # type: ignore[union-attr]
            return
        elif kind is wire.SessionMessage:
            message.reply = msg.reply or ""  # type: ignore[union-attr]
        exchange.queue.put_nowait(message)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._acks.get(subjects.last_token(msg.subject))
        if waiting is not None and not waiting.done():
            waiting.set_result(msg)

    async def _on_body_pull(self, msg: Msg) -> None:
        exchange = self._exchanges.get(subjects.last_token(msg.subject))
        if exchange is None or exchange.body is None:
            await self._reply(msg, *wire.encode_body_refusal("request unknown or already answered"))
            return
        self.spawn(self._serve_body(exchange, msg))

    async def _serve_body(self, exchange: Exchange, msg: Msg) -> None:
        body = exchange.body
        assert body is not None
        try:
            offset, wait_s = wire.decode_body_pull(msg.headers)
        except wire.WireError as exc:
            await self._reply(msg, *wire.encode_body_refusal(exc.detail))
            return
        if offset != body.consumed:
            # an earlier delivery of this request already consumed the body (worker died meanwhile)
            refusal = wire.encode_body_refusal("request body already consumed by an earlier attempt")
            await self._reply(msg, *refusal)
            return
        try:
            chunk, eof = await body.read(self._settings.body_chunk_bytes, wait_s)
        except errors.FnplaneError as exc:
            exchange.queue.put_nowait(exc if body.too_large else DISCONNECTED)
            await self._reply(msg, *wire.encode_body_refusal(exc.detail))
            return
        await self._reply(msg, *wire.encode_body_chunk(chunk, eof))

    async def _reply(self, msg: Msg, headers: dict[str, str] | None, data: bytes) -> None:
        if msg.reply and self.nc is not None:
            with contextlib.suppress(NatsError):
                await self.nc.publish(msg.reply, data, headers=headers)

    async def _on_locate(self, msg: Msg) -> None:
        exchange = self._exchanges.get(msg.data.decode(errors="replace"))
        if exchange is not None:
            await self._reply(msg, None, f"{exchange.version_id} {exchange.function_id}".encode())

    async def send(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """One message to a worker (the calls of a gRPC session it holds)."""
        assert self.nc is not None
        await self.nc.publish(subject, data, headers=headers)

    async def confirm_session(self, reply: str, refusal: str | None = None) -> None:
        """Answer a worker that took a gRPC session: confirmed, or refused with the reason."""
        if reply and self.nc is not None:
            headers = wire.encode_session_refusal(refusal) if refusal else None
            with contextlib.suppress(NatsError):
                await self.nc.publish(reply, b"", headers=headers)

    async def grant_credit(self, exchange: Exchange, chunks: int) -> None:
        """Grant the worker `chunks` more response chunks."""
        if exchange.credit_to and self.nc is not None:
            await self.nc.publish(exchange.credit_to, wire.encode_credit(chunks))

    # --- publishing --------------------------------------------------------------------------------

    def queue_spec(self, version_id: str) -> topology.QueueSpec:
        s = self._settings
        limits = topology.QueueLimits(
            max_messages=s.queue_limits.get(version_id, s.max_queued_requests),
            max_message_bytes=s.max_message_bytes,
            max_age_s=s.request_ttl_s,
        )
        return topology.request_queue(version_id, limits)

    async def ensure_stream(self, version_id: str) -> None:
        assert self.js is not None
        await ensure_queue(self.js, self.queue_spec(version_id))
        assert self.buckets is not None
        await self.buckets.results(version_id)  # created with this gateway's object TTL
        self._known_streams.add(version_id)

    async def publish(self, envelope: wire.Envelope, inline: bytes) -> None:
        """Queue the request; JetStream's ack confirms it is stored (retries are de-duplicated).

        A JetStream that does not answer for a moment (a cluster electing a stream leader after a node
        died) is tried again `publish_attempts` times; then the caller gets a 503, never silence."""
        assert self.js is not None and self.nc is not None
        vid = envelope.version_id
        subject = subjects.request_subject(vid, envelope.request_id)
        # the trace context of the gateway's span (None while tracing is off)
        headers = wire.encode_request(envelope, tracing.inject())
        if (size := wire.header_block_bytes(headers)) > wire.MAX_QUEUED_HEADER_BYTES:
            # the client's headers (and its input assets' URLs) travel in the envelope: JetStream
            # would refuse them, and that is the client's input, not an outage
            raise errors.BadRequestError(
                f"the request's headers and input asset references take {size} bytes in the queued "
                f"request, more than {wire.MAX_QUEUED_HEADER_BYTES}",
                field="headers",
                rule=f"at most {wire.MAX_QUEUED_HEADER_BYTES} bytes queued with the request",
            )
        # a message over the server's max_payload (headers included) makes it close this gateway's
        # connection, which nats-py never reopens: no request may cost every other its gateway
        if size + len(inline) > (limit := self.nc.max_payload):
            raise errors.PayloadTooLargeError(
                f"the request takes {size + len(inline)} bytes queued whole (body, headers and input "
                f"asset references), more than the bus carries in one message ({limit}); send large "
                "inputs as assets"
            )
        s = self._settings
        for attempt in range(s.publish_attempts):
            try:
                if vid not in self._known_streams:
                    await self.ensure_stream(vid)
                await self._store(envelope.request_id, subject, inline, headers)
                self._queued(envelope.request_id)
                self.queued_versions[vid] = envelope.function_id
                return
            except NoStreamResponseError:
                self._known_streams.discard(vid)  # made again on the next attempt
                continue
            except APIError as exc:
                if exc.err_code == ERR_MAX_MESSAGES_PER_SUBJECT:
                    self._queued(envelope.request_id)
                    return  # our own earlier attempt landed: a duplicate
                # (a full queue answers with code 503 too: told apart by its error code)
                if exc.err_code == ERR_MAX_MESSAGES or "maximum messages" in (exc.description or ""):
                    raise errors.TooManyRequestsError(
                        f"the request queue of function version {vid} is full: {exc.description}",
                        retry_after_s=await self.drain.retry_after(vid),
                    ) from None
                if not isinstance(exc, JsServiceUnavailableError):
                    raise errors.UnavailableError(f"could not queue the request: {exc.description}") from None
                failure: Exception = exc  # JetStream is electing a leader, or catching up: again
            except (TimeoutError, NatsError) as exc:
                failure = exc
            if attempt + 1 >= s.publish_attempts:
                raise errors.UnavailableError(f"could not queue the request: {failure!r}") from None
            await asyncio.sleep(0.1 * 2**attempt)
        raise errors.UnavailableError("could not queue the request")

    async def _store(self, request_id: str, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish to the version's queue and wait for JetStream to say it is stored; raises what
        `JetStreamContext.publish` raises. The answer comes to this gateway's ack inbox, routed by
        request id: no reply inbox, future and timer of nats-py's request() per request."""
        assert self.nc is not None
        waiting: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._acks[request_id] = waiting
        try:
            await self.nc.publish(
                subject, data, reply=subjects.gateway_ack_inbox(self.gateway_id, request_id), headers=headers
            )
            async with asyncio.timeout(self._settings.publish_timeout_s):
                answer = await waiting
        finally:
            if self._acks.get(request_id) is waiting:
                del self._acks[request_id]
        if answer.headers and answer.headers.get("Status") == "503" and not answer.data:
            raise NoStreamResponseError  # no stream listens on the subject (nats-py: no responders)
        if b'"error"' in answer.data:
            document = json.loads(answer.data)
            if "error" in document:
                raise APIError.from_error(document["error"])

    def _queued(self, request_id: str) -> None:
        if (exchange := self._exchanges.get(request_id)) is not None:
            exchange.queued = True
            exchange.queued_at = time.monotonic()
            exchange.check_every = self._settings.lost_answer_check_after_s
            exchange.check_at = exchange.queued_at + exchange.check_every

    # --- cancel, purge -----------------------------------------------------------------------------

    async def cancel(self, version_id: str, request_id: str, *, explicit: bool = False) -> None:
        """Stop the request wherever it is: a worker running it, or the queue still holding it.
        `explicit` (a client's DELETE) stops a detached request too."""
        assert self.nc is not None and self.js is not None
        subject = subjects.cancel_subject(version_id)
        with contextlib.suppress(NatsError):
            if explicit:
                headers, data = wire.encode_explicit_cancel(request_id)
                await self.nc.publish(subject, data, headers=headers)
            else:
                await self.nc.publish(subject, wire.encode_cancel(request_id))
        await self.purge(version_id, request_id)

    async def purge(self, version_id: str, request_id: str) -> None:
        assert self.js is not None
        try:
            await within(
                self.js.purge_stream(
                    subjects.request_stream(version_id),
                    subject=subjects.request_subject(version_id, request_id),
                ),
                timeout_s=self._settings.purge_timeout_s,
            )
        except (TimeoutError, NatsError) as exc:
            log.warning("could not purge request %s: %r", request_id, exc)

    # --- queues ------------------------------------------------------------------------------------

    async def queue_depth(self, version_id: str) -> int:
        """Requests waiting for a worker (the consumer's num_pending, or the whole stream without one)."""
        assert self.js is not None
        stream = subjects.request_stream(version_id)
        try:
            info = await self.js.consumer_info(stream, subjects.REQUEST_CONSUMER)
            return int(info.num_pending or 0)
        except JsNotFoundError:
            pass
        try:
            sinfo = await self.js.stream_info(stream)
        except JsNotFoundError:
            return 0
        return int(sinfo.state.messages or 0)

    async def queue_progress(self, version_id: str) -> QueueProgress | None:
        """Waiting and finished requests of a version's consumer (for its drain rate); None without
        one or when the server does not answer in time."""
        assert self.js is not None
        try:
            info = await within(
                self.js.consumer_info(subjects.request_stream(version_id), subjects.REQUEST_CONSUMER),
                timeout_s=self._settings.wake_timeout_s,
            )
        except (JsNotFoundError, TimeoutError, NatsError):
            return None
        finished = int(info.ack_floor.consumer_seq or 0) if info.ack_floor else 0
        age_s = max(0.0, time.time() - info.created.timestamp()) if info.created else 0.0
        return QueueProgress(pending=int(info.num_pending or 0), finished=finished, age_s=age_s)

    async def has_workers(self, version_id: str) -> bool:
        """Whether a worker pulls this version's queue or holds one of its requests.

        No queue or consumer yet, or a consumer with no open pull request and nothing in flight: no
        instance serves the version (or none is ready). When the server does not answer in time: True
        (the caller's delayed hint still covers it).
        """
        assert self.js is not None
        try:
            info = await within(
                self.js.consumer_info(subjects.request_stream(version_id), subjects.REQUEST_CONSUMER),
                timeout_s=self._settings.wake_timeout_s,
            )
        except JsNotFoundError:
            return False
        except (TimeoutError, NatsError) as exc:
            log.debug("queue of version %s not inspected: %r", version_id, exc)
            return True
        return bool(info.num_waiting or info.num_ack_pending)

    async def locate(self, request_id: str) -> tuple[str, str] | None:
        """(versionId, functionId) of a request some gateway still waits for, or None."""
        if (exchange := self._exchanges.get(request_id)) is not None:
            return exchange.version_id, exchange.function_id
        assert self.nc is not None
        try:
            reply = await self.nc.request(
                subjects.LOCATE_SUBJECT, request_id.encode(), timeout=self._settings.locate_timeout_s
            )
        except (NatsTimeoutError, NoRespondersError):
            return None
        version_id, _, function_id = reply.data.decode().partition(" ")
        return (version_id, function_id) if version_id and function_id else None

    async def take_undelivered(self, version_id: str) -> list[wire.Envelope]:
        """Take off the version's queue every request no worker was ever given, and return them.

        The consumer hands messages out in stream order, so those past its delivered sequence were
        never handed out. Each is deleted (a delete that fails: another gateway took it first). One
        the consumer may have handed out before its delete (the delivered sequence has moved past it
        since) is left to that worker; if no worker has it, the waiting gateway finds it gone
        (`_answer_if_lost`).
        """
        assert self.js is not None
        stream = subjects.request_stream(version_id)
        try:
            delivered = await self._delivered_seq(stream)
        except JsNotFoundError:
            return []  # no queue: nothing was ever queued
        taken: list[tuple[int, wire.Envelope]] = []
        seq = delivered + 1
        while True:
            try:
                msg = await self.js.get_msg(stream, seq, subjects.request_subjects(version_id), next=True)
            except JsNotFoundError:
                break
            seq = int(msg.seq or seq) + 1
            try:
                envelope: wire.Envelope | None = wire.decode_request(msg.headers)
            except wire.WireError:
                envelope = None  # not a request of ours: removed all the same, nobody waits for it
            try:
                if not await self.js.delete_msg(stream, seq - 1):
                    continue
            except JsNotFoundError:
                continue
            if envelope is not None:
                taken.append((seq - 1, envelope))
        if not taken:
            return []
        delivered = await self._delivered_seq(stream)
        return [envelope for taken_seq, envelope in taken if taken_seq > delivered]

    async def _delivered_seq(self, stream: str) -> int:
        """The last stream sequence the version's consumer handed out (0: none, or no consumer)."""
        assert self.js is not None
        try:
            info = await self.js.consumer_info(stream, subjects.REQUEST_CONSUMER)
        except JsNotFoundError:
            await self.js.stream_info(stream)  # raises JsNotFoundError without a queue
            return 0
        return int(info.delivered.stream_seq or 0) if info.delivered else 0

    async def answer(self, envelope: wire.Envelope, head: wire.Head, body: bytes) -> None:
        """A whole answer to the caller waiting on the envelope's reply inbox, given by the platform in
        place of a worker (`wire.PLATFORM_ATTEMPT`)."""
        assert self.nc is not None
        await self.nc.publish(envelope.reply_to, body, headers=wire.encode_head(head, wire.PLATFORM_ATTEMPT))

    async def queue_position(self, version_id: str, request_id: str) -> int | None:
        """Requests ahead of this one (0: a worker has it); None when it is no longer queued."""
        assert self.js is not None
        stream = subjects.request_stream(version_id)
        try:
            msg = await self.js.get_last_msg(stream, subjects.request_subject(version_id, request_id))
        except JsNotFoundError:
            return None
        try:
            info = await self.js.consumer_info(stream, subjects.REQUEST_CONSUMER)
        except JsNotFoundError:
            sinfo = await self.js.stream_info(stream)
            return max(0, int(msg.seq or 0) - int(sinfo.state.first_seq or 0) + 1)
        delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
        seq = int(msg.seq or 0)
        if seq <= delivered:
            return 0
        # the messages between are not all still there: a request purged on its 504 or cancelled
        # leaves a hole that must not count as one ahead
        sinfo = await self.js.stream_info(stream)
        first = max(delivered + 1, int(sinfo.state.first_seq or 0))
        deleted = int(sinfo.state.num_deleted or 0)
        if not deleted:
            return max(1, seq - first + 1)
        if deleted > MAX_HOLES_LISTED:
            # a request held for long below many acked ones: listing every hole would outgrow a
            # message; the sequence gap is an upper bound
            return max(1, seq - first + 1)
        state = await self._stream_state_with_holes(stream)
        holes = sum(1 for d in state.get("deleted") or () if first <= d <= seq)
        return max(1, seq - first + 1 - holes)

    async def _stream_state_with_holes(self, stream: str) -> dict[str, Any]:
        """The stream's state with the sequences deleted inside it (nats-py's stream_info omits them)."""
        assert self.nc is not None
        reply = await self.nc.request(
            f"$JS.API.STREAM.INFO.{stream}",
            json.dumps({"deleted_details": True}).encode(),
            timeout=self._settings.publish_timeout_s,
        )
        doc = json.loads(reply.data)
        if "error" in doc:
            raise errors.UnavailableError(f"queue {stream} unreadable: {doc['error']}")
        state: dict[str, Any] = doc.get("state") or {}
        return state


def _broadcast(
    decode: Callable[[bytes], T], handle: Callable[[T], None], what: str
) -> Callable[[Msg], Awaitable[None]]:
    """The callback of a control-plane broadcast: decode, hand on; a malformed one is logged."""

    async def on_message(msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except errors.FnplaneError as exc:
            log.warning("ignored %s: %s", what, exc)
            return
        handle(event)

    return on_message
