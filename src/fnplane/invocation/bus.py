"""The gateway's side of the request bus (NATS JetStream); the only gateway module that talks to NATS.
Messages: shared/wire.py; streams and buckets: shared/topology.py.

* `publish()` puts a request on its version's WorkQueue stream (created on first use), de-duplicated by
  `Nats-Msg-Id`; "maximum messages exceeded" -> TooManyRequestsError (429).
* One subscription receives the response streams of every request of this gateway and routes each
  message to its `Exchange`; another serves request-body chunks to workers.
* `cancel()` broadcasts the request id to the version's workers and purges the queued message.
* `queue_depth()` / `queue_position()` read the stream and its consumer.
* Revocations (`subjects.CREDENTIALS_REVOKED`, shared/revocations.py) go to `on_revoked`; after a
  reconnect it gets `revocations.EVERYTHING` (what was published meanwhile is lost on core NATS).
* After a reconnect (the server restarted, or the connection broke), a queued request whose message
  left its queue while no answer reached this gateway lost that answer (a worker sent it while this
  gateway was not subscribed): it gets a 503 at once instead of waiting out its poll window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError
from nats.js.errors import NotFoundError as JsNotFoundError

from fnplane.bus.buckets import Buckets
from fnplane.bus.connection import Client, connect
from fnplane.bus.topology import ensure_queue
from fnplane.invocation.exchange import DISCONNECTED, Exchange
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import errors, revocations, subjects, topology, wire
from fnplane.shared.revocations import CredentialsRevoked

log = logging.getLogger(__name__)

# JetStream error codes (nats-server errors.json)
ERR_MAX_MESSAGES = 10077  # maximum messages exceeded
ERR_MAX_MESSAGES_PER_SUBJECT = 10164  # maximum messages per subject exceeded (a duplicate)


class RequestBus:
    def __init__(
        self,
        nats_url: str,
        settings: GatewaySettings,
        on_revoked: Callable[[CredentialsRevoked], None] | None = None,
    ) -> None:
        self._url = nats_url
        self._settings = settings
        self._on_revoked = on_revoked
        self.gateway_id = settings.gateway_id or uuid.uuid4().hex[:12]
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.buckets: Buckets | None = None
        self._exchanges: dict[str, Exchange] = {}
        self._known_streams: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        s = self._settings
        self.nc = await connect(
            self._url,
            f"fnplane-gateway-{self.gateway_id}",
            connect_timeout_s=s.nats_connect_timeout_s,
            reconnect_wait_s=s.nats_reconnect_wait_s,
            on_reconnected=self._on_reconnected,
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
            ),
            create=True,
        )
        await self.nc.subscribe(subjects.gateway_responses(self.gateway_id), cb=self._on_response)
        await self.nc.subscribe(subjects.gateway_bodies(self.gateway_id), cb=self._on_body_pull)
        await self.nc.subscribe(subjects.LOCATE_SUBJECT, cb=self._on_locate)
        if self._on_revoked is not None:
            await self.nc.subscribe(subjects.CREDENTIALS_REVOKED, cb=self._on_revocation)

    async def _on_revocation(self, msg: Msg) -> None:
        assert self._on_revoked is not None
        try:
            event = revocations.decode(msg.data)
        except revocations.RevocationError as exc:
            log.warning("ignored a revocation message: %s", exc)
            return
        self._on_revoked(event)

    async def _on_reconnected(self) -> None:
        self._known_streams.clear()  # a server that came back without its store lost them
        if self._on_revoked is not None:
            # revocations published while we were away are lost: forget and re-check everything
            self._on_revoked(revocations.EVERYTHING)
        self.spawn(self._answer_lost_requests())

    async def _answer_lost_requests(self) -> None:
        """Requests waiting for their head whose message is gone from the queue: the answer was lost.

        Workers ack a request after its last response message, and core NATS does not keep messages for
        a subscriber that is not there. A head that arrives meanwhile lands in the queue first (it was
        routed to us before the ack removed the message), so such an exchange is left alone.
        """
        assert self.js is not None
        for exchange in list(self._exchanges.values()):
            if not exchange.queued or exchange.attempt is not None or not exchange.queue.empty():
                continue
            subject = subjects.request_subject(exchange.version_id, exchange.request_id)
            try:
                await self.js.get_last_msg(subjects.request_stream(exchange.version_id), subject)
                continue  # still queued, or a worker still holds it
            except JsNotFoundError:
                pass
            except (TimeoutError, NatsError) as exc:
                log.warning("request %s not checked after the reconnect: %r", exchange.request_id, exc)
                continue
            if exchange.attempt is None and exchange.queue.empty() and self.holds(exchange.request_id):
                exchange.queue.put_nowait(
                    errors.UnavailableError(
                        "the request bus was interrupted after a worker took the request; its answer "
                        "was lost, retry the request"
                    )
                )

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await asyncio.wait_for(self.nc.drain(), timeout=5.0)
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
            return
        try:
            message = wire.decode_response(msg.headers, msg.data)
        except wire.WireError as exc:
            log.warning("dropping a response message of request %s: %s", exchange.request_id, exc)
            return
        if type(message) is wire.ChunkMessage:
            exchange.credit_to = msg.reply
        exchange.queue.put_nowait(message)

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
            offset = wire.decode_body_pull(msg.headers)
        except wire.WireError as exc:
            await self._reply(msg, *wire.encode_body_refusal(exc.detail))
            return
        if offset != body.consumed:
            # an earlier delivery of this request already consumed the body (worker died meanwhile)
            refusal = wire.encode_body_refusal("request body already consumed by an earlier attempt")
            await self._reply(msg, *refusal)
            return
        try:
            chunk, eof = await body.read(self._settings.body_chunk_bytes)
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
        self._known_streams.add(version_id)

    async def publish(self, envelope: wire.Envelope, inline: bytes) -> None:
        """Queue the request; JetStream's ack confirms it is stored (retries are de-duplicated)."""
        assert self.js is not None
        vid = envelope.version_id
        if vid not in self._known_streams:
            await self.ensure_stream(vid)
        subject = subjects.request_subject(vid, envelope.request_id)
        headers = wire.encode_request(envelope)
        s = self._settings
        for attempt in range(s.publish_attempts):
            try:
                await self.js.publish(subject, inline, headers=headers, timeout=s.publish_timeout_s)
                self._queued(envelope.request_id)
                return
            except NoStreamResponseError:
                await self.ensure_stream(vid)
            except APIError as exc:
                if exc.err_code == ERR_MAX_MESSAGES_PER_SUBJECT:
                    self._queued(envelope.request_id)
                    return  # our own earlier attempt landed: a duplicate
                if exc.err_code == ERR_MAX_MESSAGES or "maximum messages" in (exc.description or ""):
                    raise errors.TooManyRequestsError(
                        f"the request queue of function version {vid} is full: {exc.description}",
                        retry_after_s=1,
                    ) from None
                raise errors.UnavailableError(f"could not queue the request: {exc.description}") from None
            except (TimeoutError, NatsTimeoutError, NoRespondersError) as exc:
                if attempt + 1 >= s.publish_attempts:
                    raise errors.UnavailableError(f"could not queue the request: {exc!r}") from None
                await asyncio.sleep(0.1 * 2**attempt)
        raise errors.UnavailableError("could not queue the request")

    def _queued(self, request_id: str) -> None:
        if (exchange := self._exchanges.get(request_id)) is not None:
            exchange.queued = True

    # --- cancel, purge -----------------------------------------------------------------------------

    async def cancel(self, version_id: str, request_id: str) -> None:
        """Stop the request wherever it is: a worker running it, or the queue still holding it."""
        assert self.nc is not None and self.js is not None
        with contextlib.suppress(NatsError):
            await self.nc.publish(subjects.cancel_subject(version_id), wire.encode_cancel(request_id))
        await self.purge(version_id, request_id)

    async def purge(self, version_id: str, request_id: str) -> None:
        assert self.js is not None
        try:
            await asyncio.wait_for(
                self.js.purge_stream(
                    subjects.request_stream(version_id),
                    subject=subjects.request_subject(version_id, request_id),
                ),
                timeout=self._settings.purge_timeout_s,
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

    async def has_workers(self, version_id: str) -> bool:
        """Whether a worker pulls this version's queue or holds one of its requests.

        No queue or consumer yet, or a consumer with no open pull request and nothing in flight: no
        instance serves the version (or none is ready). When the server does not answer in time: True
        (the caller's delayed hint still covers it).
        """
        assert self.js is not None
        try:
            info = await asyncio.wait_for(
                self.js.consumer_info(subjects.request_stream(version_id), subjects.REQUEST_CONSUMER),
                timeout=self._settings.wake_timeout_s,
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
        return max(0, int(msg.seq or 0) - delivered)
