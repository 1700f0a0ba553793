"""One request in flight on a gateway: its client body and the worker's response stream.

Over HTTP/1.1 the body is read from the ASGI `receive` channel only as fast as the worker asks for it
(request/reply per chunk), so a large upload waits in the client's TCP connection, not in the gateway.
Over HTTP/2 that would starve the connection: the body a queued stream has not had read holds the
connection's shared flow-control window (1 MiB), so the stream a worker is pulling gets no more data and
its pull times out (500 "request body unavailable"). An HTTP/2 body is therefore read as it arrives into
a spool (memory, then a temporary file) that the worker's pulls drain. The response messages land in a small
queue that cannot grow beyond the worker's credit window; the consumer grants credits for the chunks it
has written to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

from fnplane.invocation.http import Receive
from fnplane.shared import errors

# sentinels pushed into an exchange's queue next to NATS messages
DISCONNECTED = "disconnected"


class BodyReader:
    """A request body read incrementally from ASGI, with the size limit enforced while reading."""

    def __init__(
        self, receive: Receive, limit: int, content_length: int | None, *, spool_memory_bytes: int = -1
    ) -> None:
        """`spool_memory_bytes` >= 0: read the whole body as it arrives (HTTP/2), keeping up to that
        many unread bytes in memory and the rest in a temporary file; < 0: read on demand."""
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
        self._spool: _Spool | None = None
        self._pump: asyncio.Task[None] | None = None
        self._error: errors.FnplaneError | None = None
        self._receiving: asyncio.Future[Any] | None = None
        if spool_memory_bytes >= 0:
            self._spool = _Spool(spool_memory_bytes)
            self._arrived = asyncio.Event()
            self._pump = asyncio.get_running_loop().create_task(self._pump_body())

    async def _pump_body(self) -> None:
        spool = self._spool
        assert spool is not None
        try:
            while not self.done:
                message = await self._receive()
                self._take(message)
                await spool.append(message.get("body", b""))
                self._arrived.set()
        except errors.FnplaneError as exc:
            self._error = exc
        finally:
            self.done = True
            self.finished.set()
            self._arrived.set()

    async def _fill(self, want: int, wait_s: float | None) -> None:
        deadline = None if wait_s is None else asyncio.get_running_loop().time() + wait_s
        while not self.done and len(self._buffer) < want:
            # the receive is its own task: one that outlasts `wait_s` is not cancelled (that could
            # drop a message) but waited on by the next read
            if self._receiving is None:
                self._receiving = asyncio.ensure_future(self._receive())
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                break
            done, _ = await asyncio.wait((self._receiving,), timeout=left)
            if not done:
                break
            message = self._receiving.result()
            self._receiving = None
            self._buffer += self._take(message)
        if self.done:
            self.finished.set()

    def _take(self, message: Any) -> bytes:
        """One ASGI message of the body: its bytes, counted against the limit."""
        if message["type"] == "http.disconnect":
            self.disconnected = True
            self.done = True
            self.finished.set()
            return b""
        chunk: bytes = message.get("body", b"")
        self.received += len(chunk)
        if self.received > self._limit:
            self.too_large = True
            self.done = True
            self.finished.set()
            raise errors.PayloadTooLargeError(f"request body exceeds the limit of {self._limit} bytes")
        if not message.get("more_body", False):
            self.done = True
        return chunk

    async def read(self, size: int, wait_s: float | None = None) -> tuple[bytes, bool]:
        """Up to `size` bytes and whether the body ends with them; with `wait_s`, what arrived within
        that long (maybe nothing) rather than waiting for a client that sends slowly."""
        async with self._lock:
            if self._spool is not None:
                return await self._read_spooled(size, wait_s)
            await self._fill(size, wait_s)
            if self.disconnected:
                raise errors.BadRequestError("client disconnected while sending the body")
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            self.consumed += len(chunk)
            return chunk, self.done and not self._buffer

    async def _read_spooled(self, size: int, wait_s: float | None) -> tuple[bytes, bool]:
        spool = self._spool
        assert spool is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                while not self.done and spool.size < size:
                    self._arrived.clear()
                    await self._arrived.wait()
        if spool.closed:
            raise errors.BadRequestError("the request was answered before its body was read")
        if self._error is not None:
            raise self._error
        if self.disconnected:
            raise errors.BadRequestError("client disconnected while sending the body")
        chunk = spool.take(size)
        self.consumed += len(chunk)
        return chunk, self.done and not spool.size

    @property
    def exhausted(self) -> bool:
        if self._spool is not None:
            return self.done and not self._spool.size
        return self.done and not self._buffer

    def close(self) -> None:
        """The request is answered: stop reading its body and drop what is spooled."""
        if self._pump is not None:
            self._pump.cancel()
        if self._receiving is not None:
            self._receiving.cancel()
        if self._spool is not None:
            self._spool.close()


class _Spool:
    """Unread bytes in arrival order: in memory up to `memory_bytes`, the rest in a temporary file.

    The file's reads and writes run on the event loop: they are page-cache copies of at most one ASGI
    message or one body chunk, cheaper than a thread hop, and nothing can close the file under a thread
    still using it."""

    __slots__ = ("_fd", "_file_end", "_file_read", "_memory", "_memory_bytes", "closed", "size")

    def __init__(self, memory_bytes: int) -> None:
        self._memory_bytes = memory_bytes
        self._memory = bytearray()
        self._fd = -1
        self._file_read = 0  # the file's next unread byte
        self._file_end = 0
        self.size = 0  # unread bytes, memory and file
        self.closed = False

    async def append(self, data: bytes) -> None:
        if not data or self.closed:
            return
        # once bytes went to the file, later ones follow them there (arrival order)
        if self._fd < 0 and len(self._memory) + len(data) <= self._memory_bytes:
            self._memory += data
        else:
            if self._fd < 0:
                handle = await asyncio.to_thread(tempfile.TemporaryFile, prefix="fnplane-body-")
                with handle:
                    if self.closed:  # answered meanwhile
                        return
                    self._fd = os.dup(handle.fileno())
            os.pwrite(self._fd, data, self._file_end)
            self._file_end += len(data)
        self.size += len(data)

    def take(self, size: int) -> bytes:
        out = bytes(self._memory[:size])
        del self._memory[:size]
        want = min(size - len(out), self._file_end - self._file_read)
        if want > 0:
            more = os.pread(self._fd, want, self._file_read)
            self._file_read += len(more)
            out += more
        self.size -= len(out)
        return out

    def close(self) -> None:
        self.closed = True
        self._memory = bytearray()
        self.size = 0
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


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
