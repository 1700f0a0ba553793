"""One request on the worker, start to end: call the function and give the caller its answer.

Two modes (reference/invocation.md 3.1, 3.4):

* direct (Host-header invocation) and SSE: pure pass-through. Head as soon as the function answers,
  then every chunk as the function writes it (an SSE event is never held back), with credit-based flow
  control towards the gateway.
* pexec ("compatibility mode", compat.py): 202 after the poll window, progress, status records,
  problem+json for container errors, 302 for large results.

Two rules hold whatever fails:

* The caller is always told. A failure of the worker itself (a status-bucket write, the result zip,
  an asset download) becomes an `errored` answer at once: an error head to a waiting client, the end of
  a broken stream, or an errored status record for a detached request. Only when even that cannot be
  delivered does `run()` return False, and the puller leaves the message to JetStream's redelivery
  instead of acking it.
* A detached envelope (`Prefer: respond-async`, an `Idempotency-Key`) has no caller on its reply
  inbox: the status record says in-progress before the function is called, then holds the result (in
  direct mode the function's answer as it is). A request whose record says `rejected` (cancelled while
  queued) is never run; a cancel that arrives while it runs stops it (puller).
* A request ends at its envelope's `expiresAt` (NVCF: an hour after it was queued): a detached call
  still running then is stopped, answered `errored` (504) and its slot freed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fnplane.compute.worker.bus import BodyError, CreditTimeout, Delivery, ResponseChannel, WorkerBus
from fnplane.compute.worker.compat import CompatRequest, fail_stream
from fnplane.compute.worker.function_client import FunctionClient, is_stream, response_headers, wants_stream
from fnplane.compute.worker.http_pool import FunctionUnreachable, HttpConnectionError
from fnplane.compute.worker.problems import (
    ASSET_DOWNLOAD_ERROR,
    CONNECTION_SOURCE,
    LARGE_RESPONSE_UPLOAD_ERROR,
    UNKNOWN_ERROR,
    WORKER_SOURCE,
    failure_detail,
    problem,
)
from fnplane.compute.worker.progress import ProgressPoller
from fnplane.compute.worker.request_dirs import RequestDir, RequestRoot
from fnplane.compute.worker.results import RequestRejected, ResultUploadError, ResultWriter, download_assets
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.shared import errors, wire

log = logging.getLogger(__name__)

# pause between attempts to tell the caller about a failure
REPORT_RETRY_S = 0.2


class Forwarder:
    """Runs the requests of one instance; shared by every request the puller hands it."""

    def __init__(self, bus: WorkerBus, client: FunctionClient, settings: WorkerSettings) -> None:
        self._bus = bus
        self._client = client
        self._settings = settings
        # the instance's request directory, private; per-request paths are joined as strings (hot path)
        self._root = RequestRoot(settings.request_root, shared=settings.request_dirs_shared)
        self._compat: dict[str, CompatRequest] = {}
        self._progress = ProgressPoller(settings.progress_poll_s)

    def start(self) -> None:
        self._progress.start()

    async def aclose(self) -> None:
        """After the last request ended."""
        await self._progress.aclose()
        self._root.close()

    def is_detached(self, request_id: str) -> bool:
        request = self._compat.get(request_id)
        return request is not None and request.detached

    def _status_refresh_s(self) -> float:
        return self._settings.status_refresh_s or self._bus.buckets.status_ttl_s / 3

    async def run(self, delivery: Delivery) -> bool:
        """Run one request; True once its caller has its answer (the message is then acked)."""
        env = delivery.envelope
        rid = env.request_id
        channel = self._bus.open_channel(env, delivery.attempt)
        writer = ResultWriter(self._bus.buckets, env, self._settings.inline_result_bytes)
        # a detached request stores its answer whole, so an SSE answer takes the compat path too
        compat = env.mode is wire.InvocationMode.PEXEC and (env.detached or not wants_stream(env))
        # the request's own directories, only when it uses them (direct calls touch no file)
        files = compat or bool(env.assets)
        dirs: RequestDir | None = None
        deadline = asyncio.timeout_at(asyncio.get_running_loop().time() + env.expires_at - time.time())
        try:
            async with deadline:
                if files:
                    dirs = await asyncio.to_thread(self._root.create, rid)
                await self._run(delivery, channel, writer, compat, dirs)
            return True
        except RequestRejected:
            log.info("request %s was cancelled; stopped", rid)
            return True
        except FunctionUnreachable as exc:
            if delivery.attempt < self._settings.unreachable_attempts:
                raise  # not answered: the puller puts it back in the queue
            detail = failure_detail(exc)
            return await self._report(rid, channel, writer, 500, detail, None, source=CONNECTION_SOURCE)
        except Exception as exc:  # supervisor of one request: whatever broke, the caller is told
            if deadline.expired():
                detail = "the request ran past its deadline and was stopped"
                return await self._report(rid, channel, writer, 504, detail, UNKNOWN_ERROR)
            log.exception("request %s failed", rid)
            if isinstance(exc, ResultUploadError):
                code, detail = LARGE_RESPONSE_UPLOAD_ERROR, str(exc)
            else:  # the traceback is in the worker's log, not for the caller
                code, detail = UNKNOWN_ERROR, f"the worker failed ({type(exc).__name__})"
            return await self._report(rid, channel, writer, 500, detail, code)
        finally:
            self._compat.pop(rid, None)
            self._bus.close_channel(rid)
            if dirs is not None:
                dirs.close()
            if files:
                await asyncio.to_thread(self._root.remove, rid)

    async def _run(
        self,
        delivery: Delivery,
        channel: ResponseChannel,
        writer: ResultWriter,
        compat: bool,
        dirs: RequestDir | None,
    ) -> None:
        env = delivery.envelope
        if env.detached:
            await writer.start()  # RequestRejected: cancelled while it waited, it never runs
        # an earlier delivery already answered 202: this one works detached from the start
        detached = env.detached or (delivery.attempt > 1 and compat and await writer.exists())
        if env.assets and dirs is not None:
            try:
                await download_assets(self._bus.buckets, env.assets, dirs)
            except (OSError, errors.FnplaneError) as exc:
                headers, body = problem(
                    500, f"asset download failed: {exc}", WORKER_SOURCE, ASSET_DOWNLOAD_ERROR
                )
                if detached:
                    await writer.store_body(500, headers, body)
                else:
                    await channel.head(500, headers, body, end=True, platform_error=True)
                return
        rid = env.request_id
        headers = self._client.request_headers(env, self._root.output_path(rid), self._root.asset_path(rid))
        if not compat and env.detached:
            await self._record_pass_through(env, delivery.inline, headers, writer)
            return
        if not compat or dirs is None:
            await self._pass_through(env, delivery.inline, headers, channel)
            return
        request = CompatRequest(
            env,
            delivery.inline,
            headers,
            client=self._client,
            channel=channel,
            writer=writer,
            output=dirs,
            poller=self._progress,
            status_refresh_s=self._status_refresh_s(),
            detached=detached,
        )
        self._compat[env.request_id] = request
        await request.run()

    async def _pass_through(
        self, env: wire.Envelope, inline: bytes, headers: list[tuple[str, str]], channel: ResponseChannel
    ) -> None:
        try:
            async with await self._client.call(env, inline, headers) as resp:
                out = response_headers(resp)
                if is_stream(resp):
                    await channel.head(resp.status, out)  # SSE: headers reach the client at once
                else:
                    first = await resp.read_chunk()
                    if resp.at_eof():
                        await channel.head(resp.status, out, first, end=True)
                        return
                    await channel.head(resp.status, out, first)
                while chunk := await resp.read_chunk():
                    await channel.data(chunk)
                await channel.end()
        except FunctionUnreachable:
            raise
        except (HttpConnectionError, BodyError, CreditTimeout, OSError) as exc:
            await fail_stream(channel, exc)

    async def _record_pass_through(
        self, env: wire.Envelope, inline: bytes, headers: list[tuple[str, str]], writer: ResultWriter
    ) -> None:
        """Direct mode, detached: the function's answer untouched, stored whole in the status record."""
        try:
            async with await self._client.call(env, inline, headers) as resp:
                body = await resp.read()
                status, out = resp.status, response_headers(resp)
        except FunctionUnreachable:
            raise
        except (HttpConnectionError, BodyError, OSError) as exc:
            source = WORKER_SOURCE if isinstance(exc, BodyError) else CONNECTION_SOURCE
            out, body = problem(500, failure_detail(exc), source)
            status = 500
        await writer.store_body(status, out, body)

    async def _report(
        self,
        rid: str,
        channel: ResponseChannel,
        writer: ResultWriter,
        status: int,
        detail: str,
        code: int | None,
        *,
        source: str = WORKER_SOURCE,
    ) -> bool:
        """Tell the caller the request failed; False if that could not be delivered either."""
        headers, body = problem(status, detail, source, code)
        attempts = max(1, self._settings.failure_report_attempts)
        for attempt in range(attempts):
            try:
                if writer.envelope.detached or self.is_detached(rid):
                    await writer.store_body(status, headers, body)
                elif channel.head_sent:
                    await channel.end(error=detail)
                else:
                    await channel.head(status, headers, body, end=True, platform_error=True)
                return True
            except RequestRejected:
                return True  # cancelled meanwhile: the cancel is the answer
            except Exception:  # supervisor: retried, then left to redelivery
                log.exception("could not report the failure of request %s (attempt %d)", rid, attempt + 1)
                await asyncio.sleep(REPORT_RETRY_S * 2**attempt)
        return False
