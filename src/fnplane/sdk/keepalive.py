"""HTTP/2 PING keepalive for httpx: long, silent invocations survive idle-timeout middleboxes.

httpx (and so the OpenAI SDK) speaks HTTP/2 but never sends a PING while it waits for an answer, so a
load balancer or NAT that drops connections idle for N seconds cuts a pexec that runs longer than N.
These transports do what Go's `http2.Transport{ReadIdleTimeout, PingTimeout}` does:

    client = keepalive_http_client(interval_s=20, ack_timeout_s=10, timeout=1800)   # httpx.Client
    openai.OpenAI(base_url=..., api_key=..., http_client=client)

How: httpx's transport keeps an httpcore connection pool; ours hands that pool a network backend whose
streams record, per connection, whether a read is waiting and when bytes last arrived. A background
pinger (a thread for `KeepaliveTransport`, an asyncio task for `AsyncKeepaliveTransport`, one per
transport) looks at every HTTP/2 connection (it wrote the client preface) a few times per
`interval_s`: one that has a reader waiting but received nothing for `interval_s` gets a PING frame,
written under the stream's own write lock so it never splits one of httpcore's frames. Any bytes after
it (the ACK, read and dropped by the request's own h2 state, or anything else) prove the path alive;
none within `ack_timeout_s` and the socket is shut down, so the waiting request fails at once with
`httpx.ReadError("no HTTP/2 PING ACK ...")` and the pool drops the connection.

Only the request task reads (as httpcore does); the pinger only writes, so the response keeps flowing
while PINGs go out. A response nobody is reading (a stream the caller has not iterated yet) is not
pinged: there is nobody to read the ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpcore
import httpx
from hyperframe.frame import PingFrame

from fnplane.sdk.h2fair import FairAsyncHTTPTransport

# the HTTP/2 client connection preface (RFC 9113 3.4): a connection that starts with it speaks HTTP/2,
# whether by ALPN over TLS or by prior knowledge (h2c)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# keyword arguments of httpx.Client / AsyncClient that configure the transport (they are ignored by
# the client once a transport is given, so they go to ours)
_TRANSPORT_KWARGS = (
    "verify",
    "cert",
    "trust_env",
    "http1",
    "http2",
    "limits",
    "proxy",
    "uds",
    "local_address",
    "retries",
    "socket_options",
)


@dataclass(frozen=True)
class Keepalive:
    """PING a connection silent for `interval_s` while a response is awaited; close it when no ACK
    (no bytes at all) comes back within `ack_timeout_s`."""

    interval_s: float = 20.0
    ack_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.ack_timeout_s <= 0:
            raise ValueError("Keepalive interval_s and ack_timeout_s must be > 0")

    @property
    def tick_s(self) -> float:
        """How often the pinger looks at the connections."""
        return min(max(min(self.interval_s, self.ack_timeout_s) / 5, 0.02), 1.0)


class Liveness:
    """The bookkeeping of one connection, without I/O: when to PING it and when to give up on it."""

    def __init__(self, keepalive: Keepalive, now: float) -> None:
        self.keepalive = keepalive
        self.http2 = False
        self.readers = 0
        self.last_received = now
        self.ping_sent_at: float | None = None
        self.dead: str | None = None
        self._written = False

    def writing(self, buffer: bytes) -> None:
        """Before each write: the first tells whether the connection speaks HTTP/2."""
        if not self._written:
            self._written = True
            self.http2 = buffer.startswith(HTTP2_PREFACE)

    def restart(self) -> None:
        """The stream was upgraded to TLS (a proxy's tunnel): the next write is a first one again."""
        self._written = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around one read: a reader waits meanwhile; on a connection given up on, the read fails
        with the reason (whatever the socket's shutdown made of it)."""
        self.readers += 1
        try:
            yield
        except Exception as error:
            if self.dead:
                raise httpcore.ReadError(self.dead) from error
            raise
        finally:
            self.readers -= 1
        if self.dead:
            raise httpcore.ReadError(self.dead)

    def received(self, data: bytes, now: float) -> None:
        if data:
            self.last_received = now
            self.ping_sent_at = None

    def decide(self, now: float) -> Literal["ping", "close"] | None:
        if not self.http2 or self.dead is not None:
            return None
        if not self.readers:
            # nobody reads, so nobody would see the ACK; ping again once somebody waits
            self.ping_sent_at = None
            return None
        if self.ping_sent_at is not None:
            return "close" if now - self.ping_sent_at >= self.keepalive.ack_timeout_s else None
        return "ping" if now - self.last_received >= self.keepalive.interval_s else None


def ping_frame() -> bytes:
    return bytes(PingFrame(0, opaque_data=os.urandom(8)).serialize())


def _dead_message(stream: Any, keepalive: Keepalive) -> str:
    peer = stream.get_extra_info("server_addr")
    where = f" from {peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else ""
    return (
        f"no HTTP/2 PING ACK{where} within {keepalive.ack_timeout_s:g} s "
        f"(silent for {keepalive.interval_s + keepalive.ack_timeout_s:g} s): connection closed"
    )


def _shutdown(stream: Any) -> bool:
    """Shut the stream's socket down, which wakes a reader blocked on it; False without a socket."""
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket):
        return False
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    return True


# -- blocking -----------------------------------------------------------------------------------------


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, keepalive: Keepalive) -> None:
        self._inner = inner
        self._keepalive = keepalive
        self._lock = threading.Lock()
        self.liveness = Liveness(keepalive, time.monotonic())

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with self.liveness.reading():
            data = self._inner.read(max_bytes, timeout)
        self.liveness.received(data, time.monotonic())
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.liveness.writing(buffer)
        with self._lock:
            self._inner.write(buffer, timeout)

    def ping(self) -> None:
        with self._lock:
            self._inner.write(ping_frame(), self._keepalive.ack_timeout_s)

    def kill(self) -> None:
        self.liveness.dead = _dead_message(self._inner, self._keepalive)
        if not _shutdown(self._inner):
            self._inner.close()

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        self.liveness.restart()
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, keepalive: Keepalive) -> None:
        self._inner = inner
        self._keepalive = keepalive
        self.streams: weakref.WeakSet[_Stream] = weakref.WeakSet()

    def _track(self, inner: httpcore.NetworkStream) -> _Stream:
        stream = _Stream(inner, self._keepalive)
        self.streams.add(stream)
        return stream

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return self._track(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return self._track(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _ping_once(streams: list[_Stream], now: float) -> None:
    for stream in streams:
        action = stream.liveness.decide(now)
        if action == "ping":
            stream.liveness.ping_sent_at = now
            with contextlib.suppress(httpcore.NetworkError, OSError):  # the reader sees it too
                stream.ping()
        elif action == "close":
            stream.kill()


class KeepaliveTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` (HTTP/2 by default) that PINGs idle connections from a pinger thread."""

    def __init__(self, keepalive: Keepalive | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("http2", True)
        super().__init__(**kwargs)
        self.keepalive = keepalive or Keepalive()
        # httpx builds its httpcore pool without a network_backend argument, so ours replaces the
        # pool's own (httpx `_pool`, httpcore `_network_backend`: both private, hence the version
        # ranges pinned in pyproject.toml)
        pool: Any = self._pool
        self._backend = _Backend(pool._network_backend, self.keepalive)
        pool._network_backend = self._backend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._thread_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="fnplane-h2-pinger", daemon=True)
                self._thread.start()
        return super().handle_request(request)

    def _run(self) -> None:
        while not self._stop.wait(self.keepalive.tick_s):
            _ping_once(list(self._backend.streams), time.monotonic())

    def close(self) -> None:
        self._stop.set()
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        super().close()


# -- asyncio ------------------------------------------------------------------------------------------


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, keepalive: Keepalive) -> None:
        self._inner = inner
        self._keepalive = keepalive
        self._lock = asyncio.Lock()
        self.liveness = Liveness(keepalive, time.monotonic())

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        with self.liveness.reading():
            data = await self._inner.read(max_bytes, timeout)
        self.liveness.received(data, time.monotonic())
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.liveness.writing(buffer)
        async with self._lock:
            await self._inner.write(buffer, timeout)

    async def ping(self) -> None:
        async with self._lock:
            await self._inner.write(ping_frame(), self._keepalive.ack_timeout_s)

    async def kill(self) -> None:
        self.liveness.dead = _dead_message(self._inner, self._keepalive)
        if not _shutdown(self._inner):
            await self._inner.aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        self._inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        self.liveness.restart()
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend, keepalive: Keepalive) -> None:
        self._inner = inner
        self._keepalive = keepalive
        self.streams: weakref.WeakSet[_AsyncStream] = weakref.WeakSet()

    def _track(self, inner: httpcore.AsyncNetworkStream) -> _AsyncStream:
        stream = _AsyncStream(inner, self._keepalive)
        self.streams.add(stream)
        return stream

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return self._track(inner)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return self._track(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class AsyncKeepaliveTransport(FairAsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` (HTTP/2 by default) that PINGs idle connections from an asyncio task
    (started with the first request, in that request's event loop; asyncio only, not trio)."""

    def __init__(self, keepalive: Keepalive | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("http2", True)
        super().__init__(**kwargs)
        self.keepalive = keepalive or Keepalive()
        # see KeepaliveTransport: the pool's network backend is replaced by ours
        pool: Any = self._pool
        self._backend = _AsyncBackend(pool._network_backend, self.keepalive)
        pool._network_backend = self._backend
        self._pinger: asyncio.Task[None] | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._closed and (
            self._pinger is None
            or self._pinger.done()
            or self._pinger.get_loop() is not asyncio.get_running_loop()
        ):
            # one pinger per transport, in the loop the requests run in (a transport used by another
            # asyncio.run later gets a new one: the old loop's task is gone with its loop)
            self._pinger = asyncio.create_task(self._run(), name="fnplane-h2-pinger")
        return await super().handle_async_request(request)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive.tick_s)
            now = time.monotonic()
            for stream in list(self._backend.streams):
                action = stream.liveness.decide(now)
                if action == "ping":
                    stream.liveness.ping_sent_at = now
                    with contextlib.suppress(httpcore.NetworkError, OSError):
                        await stream.ping()
                elif action == "close":
                    await stream.kill()

    async def aclose(self) -> None:
        self._closed = True
        if self._pinger is not None:
            self._pinger.cancel()
            if self._pinger.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pinger
            self._pinger = None
        await super().aclose()


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    transport = {name: kwargs.pop(name) for name in _TRANSPORT_KWARGS if name in kwargs}
    if "trust_env" in transport:
        kwargs["trust_env"] = transport["trust_env"]
    return transport, kwargs


def keepalive_http_client(
    *, interval_s: float = 20.0, ack_timeout_s: float = 10.0, **httpx_kwargs: Any
) -> httpx.Client:
    """An HTTP/2 `httpx.Client` whose connections are PINGed when idle (e.g. for `openai.OpenAI(
    http_client=...)`); other keywords go to httpx (`timeout`, `verify`, `base_url`, `headers`, ...)."""
    transport_kwargs, client_kwargs = _split(httpx_kwargs)
    transport = KeepaliveTransport(Keepalive(interval_s, ack_timeout_s), **transport_kwargs)
    return httpx.Client(transport=transport, **client_kwargs)


def keepalive_async_http_client(
    *, interval_s: float = 20.0, ack_timeout_s: float = 10.0, **httpx_kwargs: Any
) -> httpx.AsyncClient:
    """The `httpx.AsyncClient` twin of `keepalive_http_client` (e.g. for `openai.AsyncOpenAI`)."""
    transport_kwargs, client_kwargs = _split(httpx_kwargs)
    transport = AsyncKeepaliveTransport(Keepalive(interval_s, ack_timeout_s), **transport_kwargs)
    return httpx.AsyncClient(transport=transport, **client_kwargs)
