"""gRPC sessions on the worker: one slot per session, each of its calls relayed to the function.

NVCF's worker holds one concurrency slot for a whole gRPC session (reference/invocation.md 3.9); so
does this one. The puller hands a delivered session request to `GrpcSessions.run()`, which

1. tells the proxy where the session's calls go (`announce_session`; a proxy whose client gave up
   refuses, and the slot is free again at once),
2. opens a gRPC channel of the session's own to the function on 127.0.0.1:<port>,
3. runs every call the proxy opens on the session concurrently on that channel: request messages in
   (with credits back to the proxy), initial metadata, response messages (with the proxy's credits)
   and the trailer out, the client's deadline as the call's timeout, a cancel as the call's cancel,
4. ends when the proxy closes the session, goes silent (it sends keepalives), the puller cancels it,
   or the worker drains; calls still open then end UNAVAILABLE.

Messages are bytes: no protobuf is parsed here, any service and method pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from fnplane.compute.worker.bus import CreditTimeout, Delivery, WorkerBus
from fnplane.compute.worker.function_client import platform_headers
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.shared import wire
from fnplane.shared.models.compute import InstanceAssignment

log = logging.getLogger(__name__)

# client metadata the function never sees: the credential, the transport's own (gRPC sets them), and
# the platform's nvcf-* values (set by the worker; client copies are dropped)
DROPPED_METADATA = frozenset(
    {"authorization", "te", "content-type", "user-agent", "host", "connection", "grpc-timeout"}
)
_HALF_CLOSE = object()


def function_metadata(call: wire.GrpcCall, platform: list[tuple[str, str]]) -> list[tuple[str, str | bytes]]:
    """The metadata the function receives: the client's, then the platform's nvcf-* values."""
    out = [
        (key, value)
        for key, value in wire.decode_metadata(call.metadata)
        if key not in DROPPED_METADATA and not key.startswith((":", "grpc-", "nvcf-"))
    ]
    out += [(key.lower(), value) for key, value in platform]
    return out


def trailer_of(code: grpc.StatusCode, details: str | None, metadata: object) -> wire.GrpcTrailer:
    pairs = [(key, value) for key, value in (metadata or ())]  # type: ignore[attr-defined]
    return wire.GrpcTrailer(code.value[0], details or "", wire.encode_metadata(pairs))


def unavailable(detail: str) -> wire.GrpcTrailer:
    return wire.GrpcTrailer(grpc.StatusCode.UNAVAILABLE.value[0], detail)


class GrpcSessions:
    """Runs the gRPC sessions of one instance."""

    def __init__(
        self, bus: WorkerBus, target: str, assignment: InstanceAssignment, settings: WorkerSettings
    ) -> None:
        self._bus = bus
        self._target = target
        self._assignment = assignment
        self._settings = settings
        self._open: set[_Session] = set()
        self._draining = False

    async def run(self, delivery: Delivery) -> bool:
        """Hold the session until it ends; True: its message may be acked (never run twice)."""
        session = _Session(self, delivery)
        self._open.add(session)
        try:
            await session.run()
        finally:
            self._open.discard(session)
        return True

    def drain(self) -> None:
        """The worker stops: sessions end once their open calls did, and take no new ones."""
        self._draining = True
        for session in list(self._open):
            session.drain()


class _Session:
    def __init__(self, owner: GrpcSessions, delivery: Delivery) -> None:
        self._owner = owner
        self._bus = owner._bus
        self._settings = owner._settings
        self._delivery = delivery
        self._envelope = delivery.envelope
        self._platform = platform_headers(self._envelope, owner._assignment, owner._settings)
        self._calls: dict[str, _Call] = {}
        self._channel: grpc.aio.Channel | None = None
        self._ended = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_heard = self._loop.time()
        self._draining = owner._draining

    async def run(self) -> None:
        env = self._envelope
        sid = env.request_id
        self._bus.open_session(sid, self._on_event)  # before the announcement: a call may follow at once
        error = "the worker ended the session"
        # the channel (it connects lazily) is there before the announcement: the proxy's first call
        # may arrive before its confirmation
        limit = self._settings.grpc_max_message_bytes
        self._channel = grpc.aio.insecure_channel(
            self._owner._target,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                # a function that restarts is reached again quickly (gRPC's default backoff: 1 s+)
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        try:
            refusal = await self._bus.announce_session(env, self._delivery.attempt)
            if refusal is not None:
                log.info("session %s not taken: %s", sid, refusal)
                return
            error = await self._hold()
        except asyncio.CancelledError:
            error = "the session was cancelled"
            raise
        finally:
            self._bus.close_session(sid)
            calls = list(self._calls.values())
            for call in calls:
                call.interrupt(error)
            if calls:
                await asyncio.wait([c.task for c in calls], timeout=2.0)
            if self._channel is not None:
                await self._channel.close()
            await self._bus.end_session(env, self._delivery.attempt, error)

    async def _hold(self) -> str:
        """Until the session ends; why it ended."""
        silence = self._settings.session_silence_s
        while True:
            if self._draining and not self._calls:
                return "the instance is shutting down"
            remaining = self._last_heard + silence - self._loop.time()
            if remaining <= 0:
                return "the proxy holding the session went silent"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._ended.wait()
                    return "the proxy closed the session"

    def drain(self) -> None:
        self._draining = True
        if not self._calls:
            self._ended.set()

    def _on_event(self, event: wire.SessionEvent) -> None:
        self._last_heard = self._loop.time()
        kind = type(event)
        if kind is wire.CallData:
            call = self._calls.get(event.call_id)  # type: ignore[union-attr]
            if call is not None:
                call.received(event)  # type: ignore[arg-type]
        elif kind is wire.CallOpened:
            self._open_call(event)  # type: ignore[arg-type]
        elif kind is wire.CallEnded:
            call = self._calls.get(event.call_id)  # type: ignore[union-attr]
            if call is not None:
                call.requests.put_nowait(_HALF_CLOSE)
        elif kind is wire.CallCancelled:
            call = self._calls.get(event.call_id)  # type: ignore[union-attr]
            if call is not None:
                call.cancel()
        elif kind is wire.SessionClosed:
            self._ended.set()

    def _open_call(self, opened: wire.CallOpened) -> None:
        spec = opened.call
        if spec.call_id in self._calls or self._channel is None:
            return
        call = _Call(self, spec)
        if spec.inline:
            call.requests.put_nowait(opened.data)
        if spec.complete:
            call.requests.put_nowait(_HALF_CLOSE)
        self._calls[spec.call_id] = call
        call.task = self._loop.create_task(call.run(), name=f"grpc-call-{spec.call_id}")
        call.task.add_done_callback(lambda _: self._call_done(spec.call_id))

    def _call_done(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
        if self._draining and not self._calls:
            self._ended.set()


class _Call:
    """One call of a session: the client's request messages to the function, its answer back."""

    def __init__(self, session: _Session, spec: wire.GrpcCall) -> None:
        self._session = session
        self._bus = session._bus
        self.spec = spec
        self.requests: asyncio.Queue[object] = asyncio.Queue()
        self._partial = bytearray()
        self.task: asyncio.Task[None]
        # why the session ended under this call (it then ends UNAVAILABLE); None: cancelled by the proxy
        self._interrupted: str | None = None
        self._cancelled = False

    def received(self, data: wire.CallData) -> None:
        """A request message, or a piece of one (a large message comes in pieces)."""
        if data.more:
            self._partial += data.data
            return
        if self._partial:
            self.requests.put_nowait(bytes(self._partial + data.data))
            self._partial.clear()
        else:
            self.requests.put_nowait(data.data)

    def cancel(self) -> None:
        """The client cancelled (or its deadline passed): stop, nothing more goes to the proxy."""
        self._cancelled = True
        self.task.cancel()

    def interrupt(self, reason: str) -> None:
        if not self.task.done():
            self._interrupted = reason
            self.task.cancel()

    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:  # the worker's own failure: the caller still gets a status
            log.exception("gRPC call %s failed in the worker", self.spec.call_id)
            out = self._bus.open_call(self.spec, self._session._delivery.attempt)
            with contextlib.suppress(Exception):
                await out.end_call(wire.GrpcTrailer(grpc.StatusCode.INTERNAL.value[0], f"worker: {exc!r}"))
            self._bus.close_channel(self.spec.call_id)

    async def _run(self) -> None:
        session = self._session
        spec = self.spec
        attempt = session._delivery.attempt
        channel = session._channel
        assert channel is not None
        if session._draining:
            out = self._bus.open_call(spec, attempt)
            await out.end_call(unavailable("the instance is shutting down"))
            self._bus.close_channel(spec.call_id)
            return
        metadata = function_metadata(spec, session._platform)
        single = self._single_request()
        rpc: grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall
        writer: asyncio.Task[None] | None = None
        if single is not None:
            # the whole request is here (a unary or server-streaming client, most calls): one message
            # and the half-close go to the function as one batch, not three operations
            rpc = channel.unary_stream(spec.method)(single, metadata=metadata, timeout=spec.timeout_s)
        else:
            rpc = channel.stream_stream(spec.method)(metadata=metadata, timeout=spec.timeout_s)
            writer = asyncio.create_task(self._write(rpc, attempt))
        out = self._bus.open_call(spec, attempt)
        trailer: wire.GrpcTrailer | None = None
        try:
            initial = await rpc.initial_metadata()
            await out.head(200, wire.encode_metadata(list(initial or ())))
            while True:
                message = await rpc.read()
                if message is grpc.aio.EOF:
                    break
                pieces = wire.fragments(message)
                for piece in pieces[:-1]:
                    await out.data(piece, more=True)
                await out.data(pieces[-1])
            trailer = trailer_of(await rpc.code(), await rpc.details(), await rpc.trailing_metadata())
        except grpc.aio.AioRpcError as error:
            trailer = trailer_of(error.code(), error.details(), error.trailing_metadata())
        except asyncio.CancelledError:
            rpc.cancel()
            if self._interrupted is not None:
                trailer = unavailable(self._interrupted)
            elif not self._cancelled:
                raise
        except CreditTimeout:
            rpc.cancel()  # the proxy stopped reading: its client is gone
        finally:
            if writer is not None:
                writer.cancel()
            self._bus.close_channel(spec.call_id)
        if trailer is not None:
            with contextlib.suppress(Exception):  # the proxy fails the call itself when it hears nothing
                await out.end_call(trailer)

    def _single_request(self) -> bytes | None:
        """The request when all of it arrived with the open: one message, then the half-close."""
        queue = self.requests
        if queue.qsize() != 2:
            return None
        message, end = queue.get_nowait(), queue.get_nowait()
        if end is _HALF_CLOSE and isinstance(message, bytes):
            return message
        queue.put_nowait(message)  # another shape: back in order (nothing ran in between)
        queue.put_nowait(end)
        return None

    async def _write(self, rpc: grpc.aio.StreamStreamCall, attempt: int) -> None:
        """Request messages to the function as the proxy sends them, granting credit as they go."""
        batch = wire.credit_batch(self.spec.window)
        written = 0
        try:
            while True:
                item = await self.requests.get()
                if item is _HALF_CLOSE:
                    await rpc.done_writing()
                    return
                await rpc.write(item)
                written += 1
                if written >= batch:
                    await self._bus.grant_call_credit(self.spec, attempt, written)
                    written = 0
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            return  # the call ended: its status goes out from run()
        except Exception:  # the call ends through run(); a writer failure must not go unseen
            log.exception("writing to gRPC call %s failed", self.spec.call_id)
            rpc.cancel()
