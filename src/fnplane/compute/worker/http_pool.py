"""HTTP/1.1 from the worker to its function: keep-alive connections to one host:port.

Only what the worker -> function hop needs, at a fraction of a general client's cost per request
(aiohttp's client was a third of the worker's CPU). `HttpPool(host, port, ...)`:
`await pool.request(method, target, headers, body)` -> `HttpResponse`; `await pool.aclose()`.

* The request goes out as given: the headers in their order, names' case kept, repeated names kept;
  `Host` first, nothing else added but the body's framing (`Content-Length` for a body in memory, also
  when it is empty; a streamed body without a `Content-Length` header is sent chunked). Header text
  with a line break is refused (ValueError), as aiohttp does.
* A streamed body (an async iterator) is written while the response is awaited: a function may answer
  before it read everything. Its iterator's own error (the gateway's body pull failed) is what the
  response raises.
* Responses are parsed by httptools (llhttp): Content-Length, chunked and close-delimited bodies,
  1xx interim responses skipped. The body arrives chunk by chunk as the function writes it (an SSE event
  is never held back); an unread backlog beyond `READ_HIGH_WATER_BYTES` pauses reading from the socket.
  Nothing is decompressed and redirects are not followed.
* A connection goes back to the pool only after its response was read to the end with keep-alive;
  idle ones are closed after `keepalive_s`. An idempotent request whose reused connection turned out to
  be closed before any answer is sent once more on a new connection (RFC 9112 9.3.1, as aiohttp).
* Every failure to reach the function or to get a whole response from it is an `HttpConnectionError`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import AsyncIterator

import httptools

log = logging.getLogger(__name__)

# the function's unread response body beyond this pauses reading from its socket
READ_HIGH_WATER_BYTES = 256 * 1024
# a response head larger than this is refused (NVCF's IS allows 8 KiB + 400 KiB): the head travels to
# the gateway in one NATS message, which a server refuses over its max_payload (1 MiB by default)
MAX_HEAD_BYTES = 256 * 1024
HEAD_TOO_LARGE = f"the function's response headers exceed {MAX_HEAD_BYTES} bytes"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def os_reason(exc: OSError) -> str:
    """A failed system call in words, without the address the loop puts into some messages."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__


class HttpConnectionError(Exception):
    """The function could not be reached, closed the connection early or did not speak HTTP/1.1."""


class FunctionUnreachable(HttpConnectionError):
    """No connection to the function could be made: nothing of the request reached it (it is down,
    e.g. restarting), so the request may go to another instance or wait for this one."""


class _RetryableError(HttpConnectionError):
    """A reused connection was closed before the function answered anything."""


class HttpResponse:
    """The function's response: status and raw headers at once, the body as it arrives."""

    __slots__ = (
        "_body_error",
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_head",
        "_until_eof",
        "_waiter",
        "_writer",
        "headers",
        "method",
        "status",
    )

    def __init__(self, conn: _Connection, method: str, head: asyncio.Future[None]) -> None:
        self._conn = conn
        self.method = method
        self._head = head
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._until_eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def at_eof(self) -> bool:
        """The whole body was read."""
        return self._done and not self._chunks

    async def read_chunk(self) -> bytes:
        """What arrived of the body since the last call, waiting for something; b"" at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._buffered > READ_HIGH_WATER_BYTES:
            self._conn.resume_reading()
        self._buffered = 0
        return data

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Done with it: the connection goes back to the pool if the exchange ended cleanly."""
        reusable = self._done and self._error is None
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()  # the function answered before it read the whole body
            reusable = False
        self._conn.finish(self, reusable=reusable)

    async def __aenter__(self) -> HttpResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    # --- fed by the connection ---------------------------------------------------------------------

    def _on_head(self, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        headers = self.headers
        framed = False
        for k, v in raw:
            name = k.decode("latin-1")
            headers.append((name, v.decode("latin-1")))
            if not framed:
                framed = name.lower() in _FRAMING
        if self.method == "HEAD":
            self._done = True  # llhttp would wait for the body that Content-Length announces
        elif status not in (204, 304):
            self._until_eof = not framed
        if not self._head.done():
            self._head.set_result(None)

    def _on_body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER_BYTES:
            self._conn.pause_reading()
        self._wake()

    def _on_complete(self) -> None:
        self._done = True
        self._wake()

    def _on_lost(self, exc: BaseException | None) -> None:
        if self._done:
            return
        if self._head.done() and self._until_eof and exc is None:
            self._done = True  # a close-delimited body ends with the connection
            self._wake()
            return
        # a clean close (exc None) is the usual case: no ": None" at the end of the caller's detail
        why = f": {exc}" if exc is not None else ""
        self.fail(HttpConnectionError(f"the function closed the connection before the response ended{why}"))

    def fail(self, exc: BaseException) -> None:
        if self._error is not None or self._done:
            return
        self._error = exc
        if not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One connection to the function; the httptools parser calls back into it."""

    def __init__(self, pool: HttpPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.response: HttpResponse | None = None
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._raw: list[tuple[bytes, bytes]] = []
        self._in_head = True
        # bytes received while the response head is incomplete (bounded by MAX_HEAD_BYTES)
        self._head_bytes = 0
        self._keep_alive = False
        # the function sent something since the current request went out
        self._received = False
        self._reading_paused = False
        self._writing_paused = False
        self._drain: asyncio.Future[None] | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self.response is None:
            self.close()  # nobody asked: not a response this connection can be trusted with
            return
        in_head = self._in_head
        if in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._broken(HttpConnectionError(f"the function's response is not valid HTTP/1.1: {exc}"))
            return
        if in_head and self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._broken(HttpConnectionError(HEAD_TOO_LARGE))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            if self.requests > 1 and not self._received:
                response.fail(_RetryableError(f"the function closed a kept-alive connection: {exc}"))
            response._on_lost(exc)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(HttpConnectionError(f"the function closed the connection: {exc}"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # not a chunked body's trailers
            self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._raw = []  # an interim response (100 Continue, 103 Early Hints): the real one follows
            self._head_bytes = 0
            return
        self._in_head = False
        response = self.response
        if response is None or response._head.done():
            self._broken(HttpConnectionError("the function sent a response nobody asked for"))
            return
        # what arrived with the head is an upper bound of its size: most heads need no count
        if (
            self._head_bytes > MAX_HEAD_BYTES
            and sum(len(k) + len(v) + 4 for k, v in self._raw) > MAX_HEAD_BYTES
        ):
            self._broken(HttpConnectionError(HEAD_TOO_LARGE))
            return
        response._on_head(status, self._raw)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._on_body(body)

    def on_message_complete(self) -> None:
        if self._in_head:
            return  # the end of an interim response
        self._keep_alive = self._parser.should_keep_alive()
        if self.response is not None:
            self.response._on_complete()

    # --- used by the pool and the response ---------------------------------------------------------

    def start(self, response: HttpResponse, data: bytes) -> None:
        self.requests += 1
        self.response = response
        self._raw = []
        self._in_head = True
        self._head_bytes = 0
        self._keep_alive = False
        self._received = False
        assert self.transport is not None
        self.transport.write(data)

    def finish(self, response: HttpResponse, *, reusable: bool) -> None:
        if self.response is not response:
            return
        self.response = None
        if reusable and self._keep_alive and response.method != "HEAD" and not self.closed:
            if self._reading_paused:
                self.resume_reading()
            self.pool._put_back(self)
        else:
            self.close()

    async def write_body(self, response: HttpResponse, body: AsyncIterator[bytes], chunked: bool) -> None:
        assert self.transport is not None
        try:
            async for chunk in body:
                if self.closed:
                    return  # the function answered and closed: the rest is not wanted
                if not chunk:
                    continue
                if chunked:
                    self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    self.transport.write(chunk)
                if self._writing_paused:
                    self._drain = self.loop.create_future()
                    await self._drain
            if chunked:
                self.transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the body's own error (the gateway's) is what the response raises
            response.fail(exc)
            self.close()

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _broken(self, exc: HttpConnectionError) -> None:
        if self.response is not None:
            self.response.fail(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self.pool._discard(self)
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one function (see the module docstring)."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float, keepalive_s: float = 60.0) -> None:
        self._host = host
        self._port = port
        self._authority = f"{host}:{port}"
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        # most recently used last: reuse takes the warmest, expiry looks at the coldest
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] = b"",
    ) -> HttpResponse:
        """Send the request; the response once its status line and headers arrived."""
        if isinstance(body, bytes):
            stream = None
            chunked = False
            data = _head(method, target, self._authority, headers, len(body), chunked) + body
        else:
            stream = body
            chunked = not any(k.lower() == "content-length" for k, _ in headers)
            data = _head(method, target, self._authority, headers, None, chunked)
        retry = stream is None and method in IDEMPOTENT_METHODS
        while True:
            conn = await self._connection()
            loop = conn.loop
            response = HttpResponse(conn, method, loop.create_future())
            conn.start(response, data)
            if stream is not None:
                response._writer = loop.create_task(conn.write_body(response, stream, chunked))
            try:
                await response._head
            except _RetryableError:
                response.release()
                if retry:
                    retry = False
                    continue
                raise
            except BaseException:
                response.release()
                raise
            return response

    async def aclose(self) -> None:
        self._closed = True
        for conn in (*self._idle, *self._busy):
            conn.close()
        self._idle.clear()
        self._busy.clear()

    async def _connection(self) -> _Connection:
        idle = self._idle
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_s:
                self._busy.add(conn)
                return conn
            conn.close()
        if self._closed:
            raise HttpConnectionError("the worker is shutting down")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self, loop), self._host, self._port
                )
        except (OSError, TimeoutError) as exc:
            log.warning("cannot connect to the function at %s: %r", self._authority, exc)
            raise FunctionUnreachable(f"cannot connect to the function: {os_reason(exc)}") from None
        assert isinstance(protocol, _Connection)
        self._busy.add(protocol)
        return protocol

    def _put_back(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if self._closed:
            conn.close()
            return
        now = conn.loop.time()
        conn.idle_since = now
        idle = self._idle
        # the coldest idle connection may have outlived the keep-alive time: close it now
        if idle and now - idle[0].idle_since >= self._keepalive_s:
            idle.popleft().close()
        idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        self._busy.discard(conn)


def _head(
    method: str,
    target: str,
    authority: str,
    headers: list[tuple[str, str]],
    length: int | None,
    chunked: bool,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    breaks = len(lines) + 1  # the request line and Host share the first entry
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("a line break in the request line or a header: refused")
    return text.encode()
