"""One gRPC call relayed over its session: the client's messages to the worker, the function's
answer back, on raw bytes (any service, method and call shape).

    client --(grpcio server)--> CallRelay --(bus: open, data*, end | cancel)--> worker --> function
    client <---------------------- head (initial metadata), data*, end (status, trailers) <--

The open waits up to `open_grace_s` for the client's first message and its half-close: a unary or
server-streaming call then travels to the worker as one message, and to the function as one batch.
Flow control both ways: at most `request_window` request messages are unanswered by the worker's
credit, and the proxy grants the worker credit for the response messages it wrote to the client. The
client's deadline goes with the call; a client that cancels (or whose deadline passes) cancels the
call on the worker and so in the function. A session that breaks fails the call with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import grpc

from fnplane.invocation.exchange import Exchange
from fnplane.invocation.grpc.codes import status_code, status_of
from fnplane.invocation.grpc.sessions import Session
from fnplane.invocation.grpc.settings import GrpcSettings
from fnplane.invocation.request_telemetry import log_access
from fnplane.shared import errors, subjects, wire
from fnplane.telemetry import tracing

REQUEST_ID = "nvcf-reqid"
# a read that has not completed within the open grace
_PENDING = object()
# metadata only gRPC itself may send, never relayed as the function's own
_RESERVED_PREFIXES = (":", "grpc-")
_RESERVED = frozenset({"content-type", "te", "user-agent"})
# the function's rich error details (google.rpc.Status) pass in the trailers
_STATUS_DETAILS = "grpc-status-details-bin"


def relayable(metadata: list[tuple[str, str | bytes]], *, trailers: bool = False) -> list[tuple[str, Any]]:
    return [
        (key, value)
        for key, value in metadata
        if key not in _RESERVED
        and (not key.startswith(_RESERVED_PREFIXES) or (trailers and key == _STATUS_DETAILS))
    ]


class CallRelay:
    def __init__(
        self,
        session: Session,
        method: str,
        metadata: list[tuple[str, str | bytes]],
        context: grpc.aio.ServicerContext[Any, Any],
        settings: GrpcSettings,
    ) -> None:
        self._session = session
        self._bus = bus = session.bus
        self._context = context
        self.call_id = str(uuid.uuid4())
        self._exchange = exchange = Exchange(self.call_id, session.function_id, session.version_id, None)
        self._window = asyncio.Semaphore(settings.request_window)
        exchange.on_credit = self._granted
        # tracing on: a span of this call, continuing the client's traceparent metadata; the function
        # gets the span's context instead (tracing off: the client's metadata passes untouched)
        self._span = self._trace(method, metadata) if tracing.enabled() else None
        if self._span is not None and (trace := tracing.inject(self._span)):
            metadata = [(k, v) for k, v in metadata if k not in wire.TRACE_HEADERS] + list(trace.items())
        self._spec = wire.GrpcCall(
            call_id=self.call_id,
            method=method,
            metadata=wire.encode_metadata(metadata),
            reply_to=subjects.gateway_response_inbox(bus.gateway_id, self.call_id),
            timeout_s=context.time_remaining(),
            window=settings.request_window,
        )
        self._data = wire.call_header(wire.Kind.DATA, self.call_id)
        self._data_more = wire.more_header(self._data)
        self._head_sent = False
        self._ended = False
        self._grace_s = settings.open_grace_s
        # the call's gRPC status once known (its access line)
        self._code: grpc.StatusCode | None = None

    def _trace(self, method: str, metadata: list[tuple[str, str | bytes]]) -> Any:
        session = self._session
        parent = {k: v for k, v in metadata if k in wire.TRACE_HEADERS and isinstance(v, str)}
        return tracing.start_span(
            method.lstrip("/"),
            kind=tracing.SERVER,
            parent=parent,
            attributes={
                "rpc.system": "grpc",
                "request_id": session.id,
                "function_id": session.function_id,
                "function_version_id": session.version_id,
                "nca_id": session.grant.nca_id,
            },
        )

    def _granted(self, chunks: int) -> None:
        for _ in range(chunks):
            self._window.release()

    async def run(self) -> None:
        session = self._session
        bus = self._bus
        exchange = self._exchange
        bus.open(exchange)
        session.call_started(self.call_id, exchange)
        sender: asyncio.Task[None] | None = None
        started = time.perf_counter()
        try:
            sender = asyncio.create_task(self._send_requests())
            await self._relay_answer()
        finally:
            if self._span is not None:
                code = self._code
                if code is not None:
                    self._span.set_attribute("rpc.grpc.status_code", code.value[0])
                failed = None if code is grpc.StatusCode.OK else f"gRPC {code.name if code else 'CANCELLED'}"
                tracing.end_span(self._span, error=failed)
            log_access(
                "POST",
                self._spec.method,
                "grpc",
                self._code.name if self._code is not None else None,
                round((time.perf_counter() - started) * 1000, 3),
                {
                    "request_id": session.id,
                    "function_id": session.function_id,
                    "function_version_id": session.version_id,
                    "account": session.grant.nca_id,
                },
            )
            if sender is not None:
                sender.cancel()
            bus.close(self.call_id)
            session.call_ended(self.call_id)
            if not self._ended:  # the client cancelled, its deadline passed, or the session broke
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        bus.send(session.calls_to, b"", wire.call_header(wire.Kind.CANCEL, self.call_id))
                    )

    async def _soon(self, read: asyncio.Future[Any]) -> Any:
        """The read's result if it comes within the open grace, else _PENDING (it goes on)."""
        if not read.done():
            await asyncio.wait((read,), timeout=self._grace_s)
        return read.result() if read.done() else _PENDING

    async def _open(self) -> asyncio.Future[Any] | None:
        """Open the call on the worker, with as much of the request as is already here: the next read
        (None: the request is complete). The client is not waited for longer than the grace: a
        function may answer before it reads (a server-first stream)."""
        context = self._context
        spec = self._spec
        to = self._session.calls_to
        read = asyncio.ensure_future(context.read())
        first = await self._soon(read)
        if first is grpc.aio.EOF:  # no request message at all
            spec.complete = True
            await self._bus.send(to, b"", wire.encode_call_open(spec))
            return None
        if first is _PENDING or len(first) > wire.GRPC_FRAGMENT_BYTES:
            await self._bus.send(to, b"", wire.encode_call_open(spec))
            return read
        await self._window.acquire()
        spec.inline = True
        read = asyncio.ensure_future(context.read())
        spec.complete = await self._soon(read) is grpc.aio.EOF
        await self._bus.send(to, first, wire.encode_call_open(spec))
        return None if spec.complete else read

    async def _send_requests(self) -> None:
        context = self._context
        bus = self._bus
        to = self._session.calls_to
        pending = await self._open()
        while pending is not None:
            message = await pending
            if message is grpc.aio.EOF:
                await bus.send(to, b"", wire.call_header(wire.Kind.END, self.call_id))
                return
            await self._window.acquire()  # the window counts messages, whatever their pieces
            pieces = wire.fragments(message)
            for piece in pieces[:-1]:
                await bus.send(to, piece, self._data_more)
            await bus.send(to, pieces[-1], self._data)
            pending = asyncio.ensure_future(context.read())

    async def _relay_answer(self) -> None:
        context = self._context
        exchange = self._exchange
        bus = self._bus
        ungranted = 0
        batch = 1
        partial = bytearray()  # the pieces of a large response message so far
        while True:
            item = await exchange.queue.get()
            kind = type(item)
            if kind is wire.ChunkMessage:
                if item.more:
                    partial += item.data
                else:
                    if not self._head_sent:
                        await self._send_head([])
                    await context.write(bytes(partial + item.data) if partial else item.data)
                    partial.clear()
                # every piece earns its credit once taken: a message of more pieces than the window
                # must not wait for itself
                ungranted += 1
                if ungranted >= batch:
                    await bus.grant_credit(exchange, ungranted)
                    ungranted = 0
            elif kind is wire.HeadMessage:
                batch = wire.credit_batch(item.head.window)
                await self._send_head(wire.decode_metadata(item.head.headers))
            elif kind is wire.EndMessage:
                self._ended = True
                trailer = item.trailer
                if trailer is None:  # the worker broke off without the function's status
                    self._fail(errors.UnavailableError(item.error or "the call ended without a status"))
                    return
                await self._finish(trailer)
                return
            elif isinstance(item, errors.FnplaneError):
                self._fail(item)
                return

    async def _send_head(self, metadata: list[tuple[str, str | bytes]]) -> None:
        self._head_sent = True
        await self._context.send_initial_metadata((*relayable(metadata), (REQUEST_ID, self._session.id)))

    async def _finish(self, trailer: wire.GrpcTrailer) -> None:
        context = self._context
        if not self._head_sent:
            await self._send_head([])
        context.set_trailing_metadata(tuple(relayable(wire.decode_metadata(trailer.metadata), trailers=True)))
        code = self._code = status_code(trailer.code)
        if code is not grpc.StatusCode.OK:
            context.set_code(code)
            context.set_details(trailer.details)

    def _fail(self, error: errors.FnplaneError) -> None:
        context = self._context
        context.set_trailing_metadata(((REQUEST_ID, self._session.id),))
        context.set_code(code := status_of(error))
        self._code = code
        context.set_details(error.detail)
