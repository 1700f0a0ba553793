"""One request in flight on a gateway: its client body and the worker's response stream.

The body is read from the ASGI `receive` channel only as fast as the worker asks for it (request/reply
per chunk), so a large upload never sits in gateway memory. The response messages land in a small
queue that cannot grow beyond the worker's credit window; the consumer grants credits for the chunks it
has written to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fnplane.invocation.http import Receive
from fnplane.shared import errors

# sentinels pushed into an exchange's queue next to NATS messages
DISCONNECTED = "disconnected"


class BodyReader:
    """A request body read incrementally from ASGI, with the size limit enforced while reading."""

    def __init__(self, receive: Receive, limit: int, content_length: int | None) -> None:
        if content_length is not None and content_length > limit:
            raise errors.PayloadTooLargeError(
                f"request body of {content_length} bytes exceeds the limit of {limit}"
            )
        self._receive = receive
        self._limit = limit
        self._buffer = bytearray()
        self.received = 0  # bytes taken from the client
        self.consumed = 0  # bytes handed out
        self.done = False  # the client sent its last chunk
        self.disconnected = False
        self.too_large = False
        self._lock = asyncio.Lock()
        self.finished = asyncio.Event()  # set once the client sent everything (or went away)

    async def _fill(self, want: int) -> None:
        while not self.done and len(self._buffer) < want:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.done = True
                self.finished.set()
                return
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self._limit:
                self.too_large = True
                self.done = True
                self.finished.set()
                raise errors.PayloadTooLargeError(f"request body exceeds the limit of {self._limit} bytes")
            self._buffer += chunk
            if not message.get("more_body", False):
                self.done = True
        if self.done:
            self.finished.set()

    async def read(self, size: int) -> tuple[bytes, bool]:
        """Up to `size` bytes and whether the body ends with them."""
        async with self._lock:
            await self._fill(size)
            if self.disconnected:
                raise errors.BadRequestError("client disconnected while sending the body")
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            self.consumed += len(chunk)
            return chunk, self.done and not self._buffer

    @property
    def exhausted(self) -> bool:
        return self.done and not self._buffer


class Exchange:
    __slots__ = (
        "attempt",
        "body",
        "check_at",
        "check_every",
        "credit_batch",
        "credit_to",
        "function_id",
        "on_credit",
        "queue",
        "queued",
        "queued_at",
        "request_id",
        "version_id",
    )

    def __init__(self, request_id: str, function_id: str, version_id: str, body: BodyReader | None) -> None:
        self.request_id = request_id
        self.function_id = function_id
        self.version_id = version_id
        self.body = body
        # decoded response messages (shared.wire), bounded by the worker's credit window (+ head, end
        # and heartbeats), and the sentinels above
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        # the delivery attempt whose head was taken; messages of other attempts are ignored
        self.attempt: str | None = None
        # response chunks granted per credit reply (from the worker's window on its head message)
        self.credit_batch = 1
        # where credits go: the reply subject of the worker's chunks
        self.credit_to: str | None = None
        # JetStream acknowledged the request message (it is, or was, in its version's queue)
        self.queued = False
        self.queued_at = 0.0  # monotonic
        # when the request bus next checks that the answer was not lost (its message left the queue
        # while no head came), and the wait before the check after that (doubling)
        self.check_at = 0.0
        self.check_every = 0.0
        # a gRPC call's sender: the worker granted it more request messages (handled on arrival, not
        # queued behind response messages the client has yet to read)
        self.on_credit: Callable[[int], None] | None = None


async def watch_disconnect(exchange: Exchange, receive: Receive) -> None:
    """Once the body is fully read, the next ASGI message is the client going away."""
    body = exchange.body
    if body is not None and not body.exhausted:
        # the worker is still pulling; BodyReader reports a disconnect itself. Wait for it to finish.
        await body.finished.wait()
        if body.disconnected:
            exchange.queue.put_nowait(DISCONNECTED)
            return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            exchange.queue.put_nowait(DISCONNECTED)
            return
