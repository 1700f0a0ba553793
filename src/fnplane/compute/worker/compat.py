"""pexec's "compatibility mode" (reference/invocation.md 3.4) for one request.

The function's answer races a timer set to the end of the poll window and the `progress` file in
NVCF-LARGE-OUTPUT-DIR. Timer or progress first -> the request detaches: the gateway gets a 202 and the
worker keeps working, writing progress and then the result to the status bucket (results.py), and
rewriting the record while it runs so it never expires before its request. A container 4xx/5xx
becomes problem+json; a body over the direct-response limit or extra files in the output dir become a
zip in the object store, answered with 302. An SSE answer is streamed as it comes (or, once detached,
stored whole).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from typing import IO

from fnplane.compute.worker.bus import BodyError, CreditTimeout, ResponseChannel
from fnplane.compute.worker.function_client import FunctionClient, is_stream, response_headers
from fnplane.compute.worker.http_pool import FunctionUnreachable, HttpConnectionError, HttpResponse
from fnplane.compute.worker.problems import (
    CONNECTION_SOURCE,
    INFERENCE_SOURCE,
    WORKER_SOURCE,
    container_error_detail,
    failure_detail,
    problem,
)
from fnplane.compute.worker.progress import ProgressPoller, ProgressWatch, extra_files
from fnplane.compute.worker.request_dirs import RequestDir
from fnplane.compute.worker.results import ResultWriter
from fnplane.shared import wire


class _Result:
    """The whole answer: up to the direct-response limit in memory, beyond it spilled to a file."""

    __slots__ = ("body", "headers", "spill", "status", "worker_error")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        spill: IO[bytes] | None = None,
        *,
        worker_error: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.spill = spill
        # the worker's own problem (function unreachable), kept as it is
        self.worker_error = worker_error


class CompatRequest:
    def __init__(
        self,
        env: wire.Envelope,
        inline: bytes,
        headers: list[tuple[str, str]],
        *,
        client: FunctionClient,
        channel: ResponseChannel,
        writer: ResultWriter,
        output: RequestDir,
        poller: ProgressPoller,
        status_refresh_s: float,
        detached: bool = False,
    ) -> None:
        self._env = env
        self._inline = inline
        self._headers = headers
        self._client = client
        self._channel = channel
        self._writer = writer
        self._output = output
        self._poller = poller
        self._status_refresh_s = status_refresh_s
        # the client got its 202: results go to the status bucket
        self.detached = detached

    async def run(self) -> None:
        collect = asyncio.create_task(self._collect())
        progress = ProgressWatch(self._output)
        self._poller.add(progress)
        deadline = self._env.request_time + self._env.poll_s
        refresh_at = time.monotonic() + self._status_refresh_s
        changed_wait: asyncio.Task[bool] | None = None
        try:
            while not collect.done():
                if self.detached:
                    timeout = max(0.0, refresh_at - time.monotonic())
                else:
                    timeout = max(0.0, deadline - time.time())
                if changed_wait is None or changed_wait.done():
                    changed_wait = asyncio.create_task(progress.changed.wait())
                await asyncio.wait(
                    {collect, changed_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if collect.done():
                    break
                changed = progress.changed.is_set()
                progress.changed.clear()
                if self.detached:
                    if changed:
                        await self._writer.store_progress(progress.percent, progress.partial)
                        refresh_at = time.monotonic() + self._status_refresh_s
                    elif time.monotonic() >= refresh_at:
                        await self._writer.refresh()
                        refresh_at = time.monotonic() + self._status_refresh_s
                elif changed or time.time() >= deadline:
                    await self._detach(progress if changed else None)
                    refresh_at = time.monotonic() + self._status_refresh_s
            result = collect.result()
        except BaseException:
            collect.cancel()
            raise
        finally:
            self._poller.discard(progress)
            if changed_wait is not None:
                changed_wait.cancel()
        if isinstance(result, _Result):
            await self._deliver(result)
        else:
            await self._stream_late(result)

    async def _detach(self, progress: ProgressWatch | None) -> None:
        self.detached = True
        percent = progress.percent if progress else None
        partial = progress.partial if progress else None
        await self._writer.store_progress(percent, partial)
        headers: list[tuple[str, str]] = []
        body = b""
        if progress is not None:
            headers.append(("NVCF-PERCENT-COMPLETE", str(percent if percent is not None else 0)))
            if partial is not None:
                headers.append(("Content-Type", "application/json"))
                body = json.dumps(partial).encode()
        await self._channel.head(202, headers, body, end=True)

    async def _collect(self) -> _Result | HttpResponse:
        """The whole answer, or the open response of an SSE stream."""
        env = self._env
        try:
            resp = await self._client.call(env, self._inline, self._headers)
        except FunctionUnreachable:
            raise  # not answered: back to the queue (requests.py)
        except (HttpConnectionError, BodyError, OSError) as exc:
            source = WORKER_SOURCE if isinstance(exc, BodyError) else CONNECTION_SOURCE
            h, b = problem(500, failure_detail(exc), source)
            return _Result(500, h, b, worker_error=True)
        if is_stream(resp):
            return resp
        limit = env.max_response_bytes
        # an unnamed file of the worker's own (not in the function's directories); closed by _deliver
        spill: IO[bytes] | None = None
        try:
            buf = bytearray()
            while chunk := await resp.read_chunk():
                if spill is None and len(buf) + len(chunk) <= limit:
                    buf += chunk
                    continue
                if spill is None:
                    spill = await asyncio.to_thread(tempfile.TemporaryFile)
                    await asyncio.to_thread(spill.write, bytes(buf))
                    buf = bytearray()
                await asyncio.to_thread(spill.write, chunk)
            return _Result(resp.status, response_headers(resp), bytes(buf), spill)
        except (HttpConnectionError, BodyError, OSError) as exc:
            if spill is not None:
                await asyncio.to_thread(spill.close)
            source = WORKER_SOURCE if isinstance(exc, BodyError) else CONNECTION_SOURCE
            h, b = problem(500, failure_detail(exc), source)
            return _Result(500, h, b, worker_error=True)
        finally:
            resp.release()

    async def _deliver(self, result: _Result) -> None:
        extra = await asyncio.to_thread(extra_files, self._output)
        if result.spill is not None or extra:
            try:
                name = await self._writer.store_large(result.body, result.spill, extra, self._output)
            finally:
                if result.spill is not None:
                    await asyncio.to_thread(result.spill.close)
            if self.detached:
                await self._writer.store_large_result(name)
            else:
                await self._channel.head(302, [], b"", end=True, large_result=True)
            return
        status, headers, body = result.status, result.headers, result.body
        if status >= 400 and not result.worker_error:
            headers, body = problem(status, container_error_detail(body), INFERENCE_SOURCE)
        await self.finish(status, headers, body, platform_error=result.worker_error)

    async def finish(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, platform_error: bool = False
    ) -> None:
        """The final answer: to the waiting client, or into the status record once detached."""
        if self.detached:
            await self._writer.store_body(status, headers, body)
        else:
            await self._channel.head(status, headers, body, end=True, platform_error=platform_error)

    async def _stream_late(self, resp: HttpResponse) -> None:
        channel = self._channel
        try:
            if self.detached:
                body = await resp.read()
                await self._writer.store_body(resp.status, response_headers(resp), body)
                return
            await channel.head(resp.status, response_headers(resp))
            while chunk := await resp.read_chunk():
                await channel.data(chunk)
            await channel.end()
        except (HttpConnectionError, BodyError, CreditTimeout, OSError) as exc:
            await fail_stream(channel, exc)
        finally:
            resp.release()


async def fail_stream(channel: ResponseChannel, exc: Exception) -> None:
    """A pass-through answer broke off: end the stream with the reason, or answer 500 if none started."""
    if channel.head_sent:
        await channel.end(error=f"response broke off: {failure_detail(exc)}")
        return
    source = WORKER_SOURCE if isinstance(exc, BodyError) else CONNECTION_SOURCE
    headers, body = problem(500, failure_detail(exc), source)
    await channel.head(500, headers, body, end=True, platform_error=True)
