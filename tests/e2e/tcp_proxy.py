"""A TCP proxy for the SDK tests, in a thread of its own: it forwards to a target port, keeps what the
client sent (to count requests on HTTP/1.1), and, like an idle-timeout middlebox, cuts a connection
that carried no byte in either direction for `idle_cut_s`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from up_process import free_port


class TcpProxy:
    def __init__(
        self,
        target_port: int,
        *,
        idle_cut_s: float | None = None,
        record: bool = False,
        freeze_after_s: float | None = None,
    ) -> None:
        self.target_port = target_port
        self.idle_cut_s = idle_cut_s
        # from this long after a connection opened, nothing more reaches the client (a dead path)
        self.freeze_after_s = freeze_after_s
        self.record = record
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = bytearray()  # what clients sent, when `record`
        self.connections = 0
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def count(self, marker: bytes) -> int:
        return bytes(self.sent).lower().count(marker.lower())  # header names: any case

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        loop = asyncio.get_running_loop()
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        last = [loop.time()]
        opened = [last[0]]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    last[0] = loop.time()
                    if upstream and self.record:
                        self.sent.extend(data)
                    frozen = self.freeze_after_s is not None and loop.time() - opened[0] > self.freeze_after_s
                    if frozen and not upstream:
                        continue
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()

        pipes = [
            asyncio.create_task(pipe(reader, up_writer, True)),
            asyncio.create_task(pipe(up_reader, writer, False)),
        ]
        try:
            while not all(p.done() for p in pipes):
                await asyncio.wait(pipes, timeout=0.05)
                if self.idle_cut_s is not None and loop.time() - last[0] > self.idle_cut_s:
                    self.cuts += 1
                    break
        finally:
            for p in pipes:
                p.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
