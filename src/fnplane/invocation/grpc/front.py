"""The gRPC port's front door: it accepts each client connection and pipes it to the proxy's gRPC
server on a private loopback port, so that the proxy knows every client connection and its end.

NVCF pins a session to the client's TCP connection and ends it when that connection closes
(reference/invocation.md 3.9); grpcio tells a handler only its peer's address. The front makes the
peer name the connection: each client connection gets its own loopback connection to the gRPC server,
whose local address is what grpcio reports as the peer (`ipv4:127.0.0.1:<port>`). When either side
closes, both are closed and `on_closed(connection)` ends the connection's sessions.

TLS (h2 by ALPN) ends here; the loopback hop is h2c. Bytes are piped without being parsed, with flow
control both ways (a side whose write buffer is full stops the other side's reading).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable

from fnplane.shared.loop import within

log = logging.getLogger(__name__)


class ClientConnection:
    """One client connection to the gRPC port."""

    __slots__ = ("client", "id", "peer")

    def __init__(self, connection_id: int, client: str, peer: str) -> None:
        self.id = connection_id
        # the client's address, for logs
        self.client = client
        # what grpcio reports as this connection's peer
        self.peer = peer


class _Side(asyncio.Protocol):
    """One side of a pipe: what it receives is written to the other side."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.pending = bytearray()  # received before the other side was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self is self.pipe.client:
            self.pipe.front.connecting(self.pipe)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.write(data)
        else:
            self.pending += data

    def eof_received(self) -> bool:
        self.pipe.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pipe.close()

    # our write buffer is full: stop reading the other side until it drained
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class _Pipe:
    def __init__(self, front: GrpcFront) -> None:
        self.front = front
        self.client = _Side(self)
        self.server = _Side(self)
        self.client.other = self.server
        self.server.other = self.client
        self.connection: ClientConnection | None = None
        self.closed = False

    async def connect(self) -> None:
        """Open the loopback connection for a client that just connected."""
        client = self.client.transport
        assert client is not None
        client.pause_reading()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: self.server, "127.0.0.1", self.front.inner_port
            )
        except OSError as exc:
            log.warning("gRPC front: cannot reach the proxy's server: %r", exc)
            self.close()
            return
        if self.closed:  # the client left meanwhile
            transport.close()
            return
        local = transport.get_extra_info("sockname")
        peer = client.get_extra_info("peername")
        self.connection = ClientConnection(
            next(self.front.ids), f"{peer[0]}:{peer[1]}" if peer else "?", f"ipv4:{local[0]}:{local[1]}"
        )
        self.front.opened(self)
        if self.client.pending:
            transport.write(bytes(self.client.pending))
            self.client.pending.clear()
        client.resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.close()
        self.front.closed(self)


class GrpcFront:
    """Listens on the public gRPC port; `connection(peer)` names the client connection of a call."""

    def __init__(
        self,
        host: str,
        port: int,
        inner_port: int,
        on_closed: Callable[[ClientConnection], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self.port = port
        self.inner_port = inner_port
        self._on_closed = on_closed
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._by_peer: dict[str, ClientConnection] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self.ids = itertools.count(1)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accept, self._host, self.port, ssl=self._ssl, backlog=4096, reuse_address=True
        )

    def _accept(self) -> asyncio.Protocol:
        pipe = _Pipe(self)
        self._pipes.add(pipe)
        return pipe.client

    def connecting(self, pipe: _Pipe) -> None:
        """A client connected: open its loopback connection."""
        task = asyncio.get_running_loop().create_task(pipe.connect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def opened(self, pipe: _Pipe) -> None:
        assert pipe.connection is not None
        self._by_peer[pipe.connection.peer] = pipe.connection

    def closed(self, pipe: _Pipe) -> None:
        self._pipes.discard(pipe)
        connection = pipe.connection
        if connection is not None and self._by_peer.pop(connection.peer, None) is not None:
            self._on_closed(connection)

    def connection(self, peer: str) -> ClientConnection | None:
        """The client connection a call arrived on (None: not through this front)."""
        return self._by_peer.get(peer)

    @property
    def open_connections(self) -> int:
        return len(self._by_peer)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.close()
        for task in list(self._connecting):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await within(self._server.wait_closed(), 2.0)
            self._server = None


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS for the gRPC port: h2 by ALPN, TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context
