"""The worker's HTTP/1.1 client towards its function, against a real server on a free port that reads
and writes raw bytes: what goes out exactly, how each kind of response body comes back, reuse and the
errors the worker maps to `inference-connection`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fnplane.compute.worker.function_client import response_headers
from fnplane.compute.worker.http_pool import HttpConnectionError, HttpPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """Runs `handler` for every connection; `received` holds each connection's bytes so far."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            with contextlib.suppress(ConnectionError):
                await self.handler(reader, writer)
            writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head, plus its body when it has a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


def answering(*responses: bytes, seen: list[bytes] | None = None) -> Handler:
    """A keep-alive server answering one request after another with `responses` in turn."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            request = await read_request(reader)
            if seen is not None:
                seen.append(request)
            writer.write(response)
            await writer.drain()
        await reader.read()

    return handler


@pytest.fixture
async def pools() -> AsyncIterator[Callable[[int], HttpPool]]:
    made: list[HttpPool] = []

    def make(port: int) -> HttpPool:
        made.append(HttpPool("127.0.0.1", port, connect_timeout_s=2.0))
        return made[-1]

    yield make
    for pool in made:
        await pool.aclose()


async def test_the_request_goes_out_as_given_with_host_first_and_content_length_last(pools):
    seen: list[bytes] = []
    async with RawServer(answering(OK, OK, seen=seen)) as server:
        pool = pools(server.port)
        headers = [("X-Foo", "1"), ("x-foo", "2"), ("content-type", "text/x")]
        async with await pool.request("POST", "/p?a=%20b", headers, b"hello") as r:
            assert await r.read() == b"ok"
        async with await pool.request("GET", "/", []) as r:
            assert await r.read() == b"ok"
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    assert seen[0] == (
        b"POST /p?a=%20b HTTP/1.1\r\n" + host + b"X-Foo: 1\r\nx-foo: 2\r\ncontent-type: text/x\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    assert seen[1] == b"GET / HTTP/1.1\r\n" + host + b"Content-Length: 0\r\n\r\n"
    assert server.connections == 1  # the second request reused the connection


async def test_response_headers_keep_their_case_order_and_repeats(pools):
    response = b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\nSet-Cookie: c=1\r\n\r\n"
    async with RawServer(answering(response)) as server:
        async with await pools(server.port).request("GET", "/", []) as r:
            assert r.status == 201
            assert r.headers == [("X-A", "1"), ("x-a", "2"), ("Content-Length", "0"), ("Set-Cookie", "c=1")]
            assert r.header("x-A") == "1"
            assert await r.read_chunk() == b"" and r.at_eof()


async def test_the_client_gets_no_hop_by_hop_header_nor_the_functions_own_nvcf_status(pools):
    # what a proxy never forwards (RFC 9110 7.6.1: also the names Connection lists), and the headers the
    # gateway sets on every answer (a client would see two NVCF-REQIDs)
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Connection: x-other\r\nX-Other: 1\r\nX-Keep: yes\r\nnvcf-reqid: fake\r\nNVCF-STATUS: fake\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    async with RawServer(answering(response)) as server:
        async with await pools(server.port).request("GET", "/", []) as r:
            assert response_headers(r) == [("X-Keep", "yes"), ("Content-Length", "0")]


async def test_a_response_head_over_256_kib_is_a_connection_error(pools):
    # the head goes to the gateway in one NATS message: one over the server's max_payload closed the
    # worker's connection (the function's 2 MB header made its worker exit, the caller waited for a 504)
    def head(size: int, end: bytes = b"\r\nContent-Length: 2\r\n\r\nok") -> bytes:
        return b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * size + end

    async with RawServer(answering(head(200 * 1024), head(300 * 1024))) as server:
        pool = pools(server.port)
        async with await pool.request("GET", "/", []) as r:
            assert r.status == 200 and len(r.header("X-Big") or "") == 200 * 1024
            assert await r.read() == b"ok"
        with pytest.raises(HttpConnectionError, match="headers exceed 262144 bytes"):
            await pool.request("GET", "/", [])

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(4 * 1024 * 1024, end=b""))  # a head that never ends
        await reader.read()

    async with RawServer(endless) as server:
        with pytest.raises(HttpConnectionError, match="headers exceed"):
            await asyncio.wait_for(pools(server.port).request("GET", "/", []), 5)


async def test_a_streamed_response_arrives_chunk_by_chunk_as_the_function_writes_it(pools):
    second = asyncio.Event()

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(b"9\r\ndata: 1\n\n\r\n")
        await second.wait()
        writer.write(b"9\r\ndata: 2\n\n\r\n0\r\nTrailer: x\r\n\r\n")
        await reader.read()

    async with RawServer(sse) as server:
        async with await pools(server.port).request("GET", "/", []) as r:
            assert await asyncio.wait_for(r.read_chunk(), 2) == b"data: 1\n\n"  # before the second exists
            second.set()
            assert await r.read_chunk() == b"data: 2\n\n"
            assert await r.read_chunk() == b""
            assert r.headers == [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]


async def test_a_close_delimited_body_ends_with_the_connection(pools):
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

    async with RawServer(once) as server:
        pool = pools(server.port)
        async with await pool.request("GET", "/", []) as r:
            assert await r.read() == b"all of it"
        async with await pool.request("GET", "/", []) as r:  # a new connection
            assert await r.read() == b"all of it"
        assert server.connections == 2


async def test_interim_responses_are_skipped_and_head_has_no_body(pools):
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 123\r\n\r\n"
    async with RawServer(answering(interim, head)) as server:
        pool = pools(server.port)
        async with await pool.request("GET", "/", []) as r:
            assert r.status == 200 and r.headers == [("Content-Length", "2")]
            assert await r.read() == b"ok"
        async with await pool.request("HEAD", "/", []) as r:
            assert await asyncio.wait_for(r.read(), 2) == b""


async def test_a_function_that_is_not_listening_is_a_connection_error(pools):
    async with RawServer(answering()) as server:
        port = server.port
    with pytest.raises(HttpConnectionError, match="cannot connect"):
        await pools(port).request("GET", "/", [])


async def test_a_response_cut_short_is_a_connection_error(pools):
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    async with RawServer(cut) as server:
        async with await pools(server.port).request("GET", "/", []) as r:
            assert await r.read_chunk() == b"only this"
            with pytest.raises(HttpConnectionError) as raised:
                await r.read_chunk()
    # the caller's problem detail (a clean close has no cause to name)
    assert str(raised.value) == "the function closed the connection before the response ended"


async def test_a_kept_alive_connection_the_function_closed_is_retried_only_when_idempotent(pools):
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)  # the next request arrives, and the connection closes unanswered

    async with RawServer(one_per_connection) as server:
        pool = pools(server.port)
        for method in ("GET", "GET"):
            async with await pool.request(method, "/", []) as r:
                assert await r.read() == b"ok"
        assert server.connections == 2  # the second GET went out again on a new connection
        with pytest.raises(HttpConnectionError):
            await pool.request("POST", "/", [], b"x")


async def test_a_streamed_body_is_chunked_and_its_own_error_is_what_the_response_raises(pools):
    seen: list[bytes] = []

    async def reader_of_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defgh"

    async with RawServer(reader_of_chunked) as server:
        async with await pools(server.port).request("PUT", "/", [], body()) as r:
            assert await r.read() == b"ok"
    assert seen[0].endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n")

    class GatewayGone(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"abc"
        raise GatewayGone("the rest of the body is unavailable")

    async with RawServer(answering(OK)) as server:
        with pytest.raises(GatewayGone):
            await pools(server.port).request("POST", "/", [("Content-Length", "10")], broken())


async def test_an_answer_before_the_whole_body_was_read_does_not_reuse_the_connection(pools):
    more = asyncio.Event()

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        await more.wait()  # the gateway has not sent the rest yet
        yield b"def"

    async with RawServer(early) as server:
        pool = pools(server.port)
        async with await pool.request("POST", "/", [("Content-Length", "6")], body()) as r:
            assert r.status == 413 and await r.read() == b""
        async with await asyncio.wait_for(pool.request("GET", "/", []), 5) as r:
            assert r.status == 413
        assert server.connections == 2


async def test_a_line_break_in_a_header_is_refused(pools):
    async with RawServer(answering(OK)) as server:
        with pytest.raises(ValueError):
            await pools(server.port).request("GET", "/", [("X-A", "1\r\nX-Injected: 2")])
