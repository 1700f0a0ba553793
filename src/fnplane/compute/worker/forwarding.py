"""One request on the worker: call the function over HTTP and stream its answer to the gateway.

Two modes (reference/invocation.md 3.1, 3.4):

* direct (Host-header invocation) and SSE: pure pass-through. Head as soon as the function answers,
  then every chunk as the function writes it (an SSE event is never held back), with credit-based flow
  control towards the gateway.
* pexec ("compatibility mode"): the function's answer races a timer set to the end of the poll window
  and the `progress` file in NVCF-LARGE-OUTPUT-DIR. Timer or progress first -> the request detaches: the
  gateway gets a 202 and the worker keeps working, writing progress and then the result to the status
  bucket (`compute/worker/results.py`). A container 4xx/5xx becomes problem+json; a body over 5 MiB or
  extra files in the output dir become a zip in the object store, answered with 302.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from yarl import URL

from fnplane.compute.worker.results import ResultWriter, WorkerStores
from fnplane.shared import subjects
from fnplane.shared.models.compute import InstanceAssignment
from fnplane.shared.models.invocation import (
    PROGRESS_FILE,
    InvocationEnvelope,
    InvocationMode,
    RequestStatus,
    StatusRecord,
)

if TYPE_CHECKING:
    from fnplane.compute.worker.requests import WorkerRequestSettings

__all__ = ["Forwarder", "WorkerStores"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# set by the worker; client-supplied copies are dropped (invocation.md 7.3)
RESERVED = frozenset(
    {
        "nvcf-reqid",
        "nvcf-sub",
        "nvcf-ncaid",
        "nvcf-function-name",
        "nvcf-function-id",
        "nvcf-function-version-id",
        "nvcf-asset-dir",
        "nvcf-function-asset-ids",
        "nvcf-large-output-dir",
        "nvcf-max-response-size-bytes",
        "nvcf-nspectid",
        "nvcf-backend",
        "nvcf-instancetype",
        "nvcf-region",
        "nvcf-env",
        "nvcf-invocation-region",
        "nvcf-poll-seconds",
        "host",
        "authorization",
        "content-length",
    }
)
STREAM_TYPE = "text/event-stream"


class BodyError(Exception):
    """The rest of the request body could not be fetched from the gateway."""


class ResponseChannel:
    """The response stream of one request to its gateway: head -> data* -> end, with credits."""

    def __init__(
        self,
        nc: NATS,
        envelope: InvocationEnvelope,
        attempt: int,
        credit_to: str,
        window: int,
        credit_timeout_s: float,
    ) -> None:
        self._nc = nc
        self._to = envelope.reply_to
        self._credit_to = credit_to
        self._credits = asyncio.Semaphore(window)
        self._window = str(window)
        self._credit_timeout_s = credit_timeout_s
        self._attempt = str(attempt)
        self.head_sent = False

    def grant(self, chunks: int = 1) -> None:
        for _ in range(chunks):
            self._credits.release()

    async def head(
        self, status: int, headers: list[tuple[str, str]], body: bytes = b"", end: bool = False
    ) -> None:
        hdrs = {
            subjects.HDR_KIND: subjects.KIND_HEAD,
            subjects.HDR_ATTEMPT: self._attempt,
            subjects.HDR_WINDOW: self._window,
            # ResponseHead's JSON, written directly (this runs once per request)
            subjects.HDR_HEAD: json.dumps({"status": status, "headers": headers}, separators=(",", ":")),
        }
        if end:
            hdrs[subjects.HDR_END] = "1"
        self.head_sent = True
        await self._nc.publish(self._to, body, headers=hdrs)

    async def data(self, chunk: bytes) -> None:
        if self._credits.locked():
            try:
                await asyncio.wait_for(self._credits.acquire(), self._credit_timeout_s)
            except TimeoutError:
                raise BodyError("the gateway stopped granting credit (client gone)") from None
        else:
            # a credit is there: take it without wait_for's task and timer (once per chunk)
            await self._credits.acquire()
        hdrs = {subjects.HDR_KIND: subjects.KIND_DATA, subjects.HDR_ATTEMPT: self._attempt}
        await self._nc.publish(self._to, chunk, reply=self._credit_to, headers=hdrs)

    async def end(self, error: str | None = None) -> None:
        hdrs = {subjects.HDR_KIND: subjects.KIND_END, subjects.HDR_ATTEMPT: self._attempt}
        if error:
            hdrs[subjects.HDR_ERROR] = error.replace("\r", " ").replace("\n", " ")
        await self._nc.publish(self._to, b"", headers=hdrs)


def problem(status: int, detail: str, source: str) -> tuple[list[tuple[str, str]], bytes]:
    """A utils-style problem document: urn:<source>:problem-details:<kebab status text>."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {
        "type": f"urn:{source}:problem-details:{phrase.lower().replace(' ', '-')}",
        "title": phrase,
        "status": status,
        "detail": detail,
    }
    return [("Content-Type", "application/problem+json")], json.dumps(body).encode()


def container_error_detail(body: bytes) -> str:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
    return "Inference error"


def response_headers(resp: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in resp.raw_headers
        if k.decode("latin-1").lower() not in HOP_BY_HOP
    ]


def wants_stream(envelope: InvocationEnvelope) -> bool:
    return any(k.lower() == "accept" and STREAM_TYPE in v.lower() for k, v in envelope.headers)


class Forwarder:
    """Runs requests of one instance; shared by every request the puller hands it."""

    def __init__(
        self,
        *,
        nc: NATS,
        session: aiohttp.ClientSession,
        stores: WorkerStores,
        assignment: InstanceAssignment,
        function_url: str,
        worker_id: str,
        settings: WorkerRequestSettings,
        output_root: Path,
        asset_root: Path,
    ) -> None:
        self._nc = nc
        self._session = session
        self._stores = stores
        self._assignment = assignment
        self._function_url = function_url
        self._worker_id = worker_id
        self._settings = settings
        self._output_root = output_root
        self._asset_root = asset_root
        # per-request dirs are joined as strings; Path objects only where files are touched (hot path)
        self._output_root_s = str(output_root)
        self._asset_root_s = str(asset_root)
        self._channels: dict[str, ResponseChannel] = {}
        self._detached: set[str] = set()

    def is_detached(self, request_id: str) -> bool:
        return request_id in self._detached

    async def on_credit(self, msg: Msg) -> None:
        channel = self._channels.get(subjects.last_token(msg.subject))
        if channel is not None:
            # a batched grant carries its chunk count; an empty reply grants one chunk
            chunks = int(msg.data) if msg.data and msg.data.isdigit() else 1
            channel.grant(chunks)

    # --- one request -------------------------------------------------------------------------------

    async def run(self, envelope: InvocationEnvelope, inline: bytes, attempt: int) -> None:
        rid = envelope.request_id
        s = self._settings
        channel = ResponseChannel(
            self._nc,
            envelope,
            attempt,
            subjects.worker_credit_inbox(self._worker_id, rid),
            s.response_window_chunks,
            s.credit_timeout_s,
        )
        self._channels[rid] = channel
        compat = envelope.mode is InvocationMode.PEXEC and not wants_stream(envelope)
        output_dir_s = os.path.join(self._output_root_s, rid)
        asset_dir_s = os.path.join(self._asset_root_s, rid)
        output_dir = Path(output_dir_s) if compat or envelope.assets else None
        asset_dir = Path(asset_dir_s) if compat or envelope.assets else None
        writer = ResultWriter(self._stores, envelope, s.inline_result_bytes)
        try:
            if attempt > 1 and compat and await writer.exists():
                # an earlier delivery already answered 202: this one works detached from the start
                self._detached.add(rid)
            if compat:
                assert output_dir is not None
                await asyncio.to_thread(output_dir.mkdir, parents=True, exist_ok=True)
            if envelope.assets:
                assert asset_dir is not None
                try:
                    await self._stores.download_assets(envelope.assets, asset_dir)
                except (OSError, NatsError) as exc:
                    headers, body = problem(500, f"asset download failed: {exc}", "nvcf-worker-service")
                    await self._finish(channel, writer, rid, 500, headers, body)
                    return
            headers = self._request_headers(envelope, output_dir_s, asset_dir_s)
            if compat:
                assert output_dir is not None
                await self._run_compat(envelope, inline, headers, channel, writer, output_dir)
            else:
                await self._run_passthrough(envelope, inline, headers, channel)
        finally:
            self._channels.pop(rid, None)
            self._detached.discard(rid)
            if output_dir is not None and asset_dir is not None:
                await asyncio.to_thread(_remove_dirs, output_dir, asset_dir)

    def _request_headers(
        self, env: InvocationEnvelope, output_dir: str, asset_dir: str
    ) -> list[tuple[str, str]]:
        a = self._assignment
        remaining = max(1, int(env.request_time + env.poll_s - time.time()))
        headers = [
            (k, v) for k, v in env.headers if k.lower() not in RESERVED and k.lower() not in HOP_BY_HOP
        ]
        if env.body_length is not None and env.body_more:
            headers.append(("Content-Length", str(env.body_length)))
        if env.mode is InvocationMode.PEXEC and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        headers += [
            ("NVCF-REQID", env.request_id),
            ("NVCF-SUB", env.subject),
            ("NVCF-NCAID", env.nca_id),
            ("NVCF-FUNCTION-NAME", env.function_name or a.function_name),
            ("NVCF-FUNCTION-ID", env.function_id),
            ("NVCF-FUNCTION-VERSION-ID", env.version_id),
            ("NVCF-ASSET-DIR", asset_dir),
            ("NVCF-LARGE-OUTPUT-DIR", output_dir),
            ("NVCF-MAX-RESPONSE-SIZE-BYTES", str(env.max_response_bytes)),
            ("NVCF-NSPECTID", self._settings.nspect_id),
            ("NVCF-BACKEND", a.backend),
            ("NVCF-INSTANCETYPE", a.instance_type),
            ("NVCF-REGION", a.region),
            ("NVCF-ENV", self._settings.environment),
            ("NVCF-INVOCATION-REGION", env.invocation_region),
            ("NVCF-POLL-SECONDS", str(remaining)),
        ]
        if env.assets:
            headers.append(("NVCF-FUNCTION-ASSET-IDS", ",".join(x.asset_id for x in env.assets)))
        return headers

    async def _body(self, env: InvocationEnvelope, inline: bytes) -> AsyncIterator[bytes]:
        if inline:
            yield inline
        offset = len(inline)
        while True:
            try:
                reply = await self._nc.request(
                    env.body_from,
                    b"",
                    timeout=self._settings.body_pull_timeout_s,
                    headers={subjects.HDR_OFFSET: str(offset)},
                )
            except (TimeoutError, NatsError) as exc:
                raise BodyError(f"request body unavailable: {exc!r}") from exc
            rh = reply.headers or {}
            if subjects.HDR_ERROR in rh:
                raise BodyError(rh[subjects.HDR_ERROR])
            if reply.data:
                offset += len(reply.data)
                yield reply.data
            if rh.get(subjects.HDR_EOF) == "1":
                return

    def _call(self, env: InvocationEnvelope, inline: bytes, headers: Any) -> Any:
        data: Any = self._body(env, inline) if env.body_more else inline
        url = URL(self._function_url + env.path, encoded=True)
        return self._session.request(env.method, url, headers=headers, data=data, allow_redirects=False)

    async def _run_passthrough(
        self, env: InvocationEnvelope, inline: bytes, headers: Any, channel: ResponseChannel
    ) -> None:
        try:
            async with self._call(env, inline, headers) as resp:
                out = response_headers(resp)
                if STREAM_TYPE in (resp.headers.get("Content-Type") or ""):
                    await channel.head(resp.status, out)  # SSE: headers reach the client at once
                else:
                    first = await resp.content.readany()
                    if resp.content.at_eof():
                        await channel.head(resp.status, out, first, end=True)
                        return
                    await channel.head(resp.status, out, first)
                while chunk := await resp.content.readany():
                    await channel.data(chunk)
                await channel.end()
        except (aiohttp.ClientError, BodyError, OSError) as exc:
            await self._fail(channel, exc)

    async def _fail(self, channel: ResponseChannel, exc: Exception) -> None:
        if channel.head_sent:
            await channel.end(error=f"response broke off: {exc!r}")
            return
        source = "nvcf-worker-service" if isinstance(exc, BodyError) else "inference-connection"
        headers, body = problem(500, f"{exc!r}", source)
        await channel.head(500, headers, body, end=True)

    async def _finish(
        self,
        channel: ResponseChannel,
        writer: ResultWriter,
        rid: str,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        if self.is_detached(rid):
            await writer.store_body(status, headers, body)
        else:
            await channel.head(status, headers, body, end=True)

    # --- compatibility mode (pexec) ----------------------------------------------------------------

    async def _run_compat(
        self,
        env: InvocationEnvelope,
        inline: bytes,
        headers: Any,
        channel: ResponseChannel,
        writer: ResultWriter,
        output_dir: Path,
    ) -> None:
        rid = env.request_id
        collect = asyncio.create_task(self._collect(env, inline, headers, output_dir))
        progress = _ProgressWatch(output_dir / PROGRESS_FILE)
        deadline = env.request_time + env.poll_s
        try:
            while not collect.done():
                if not self.is_detached(rid):
                    timeout = min(self._settings.progress_poll_s, max(0.0, deadline - time.time()))
                else:
                    timeout = self._settings.progress_poll_s
                await asyncio.wait({collect}, timeout=timeout)
                if collect.done():
                    break
                changed = await asyncio.to_thread(progress.poll)
                if self.is_detached(rid):
                    if changed:
                        await writer.store_progress(progress.percent, progress.partial)
                elif changed or time.time() >= deadline:
                    await self._detach(channel, writer, rid, progress if changed else None)
            result = collect.result()
        except asyncio.CancelledError:
            collect.cancel()
            raise
        if isinstance(result, _Stream):
            await self._stream_late(result, channel, writer, rid)
            return
        await self._deliver(result, channel, writer, rid)

    async def _detach(
        self, channel: ResponseChannel, writer: ResultWriter, rid: str, progress: _ProgressWatch | None
    ) -> None:
        self._detached.add(rid)
        percent = progress.percent if progress else None
        partial = progress.partial if progress else None
        await writer.store(
            StatusRecord.model_validate(
                {
                    **writer.identity(),
                    "status": RequestStatus.IN_PROGRESS,
                    "percentComplete": percent,
                    "partialResponse": partial,
                }
            )
        )
        headers: list[tuple[str, str]] = []
        body = b""
        if progress is not None:
            headers.append(("NVCF-PERCENT-COMPLETE", str(percent if percent is not None else 0)))
            if partial is not None:
                headers.append(("Content-Type", "application/json"))
                body = json.dumps(partial).encode()
        await channel.head(202, headers, body, end=True)

    async def _collect(self, env: InvocationEnvelope, inline: bytes, headers: Any, output_dir: Path) -> Any:
        """The whole answer (up to the direct-response limit in memory, beyond it in a file)."""
        limit = env.max_response_bytes
        try:
            resp = await self._call(env, inline, headers)
        except (aiohttp.ClientError, BodyError, OSError) as exc:
            source = "nvcf-worker-service" if isinstance(exc, BodyError) else "inference-connection"
            h, b = problem(500, f"{exc!r}", source)
            return _Result(500, h, b, None, output_dir, worker_error=True)
        if STREAM_TYPE in (resp.headers.get("Content-Type") or ""):
            return _Stream(resp)
        try:
            buf = bytearray()
            spill: Path | None = None
            while chunk := await resp.content.readany():
                if spill is None and len(buf) + len(chunk) <= limit:
                    buf += chunk
                    continue
                if spill is None:
                    spill = output_dir.parent / f"{env.request_id}.response"
                    fh = await asyncio.to_thread(open, spill, "wb")
                    await asyncio.to_thread(fh.write, bytes(buf))
                    buf = bytearray()
                await asyncio.to_thread(fh.write, chunk)
            if spill is not None:
                await asyncio.to_thread(fh.close)
            return _Result(resp.status, response_headers(resp), bytes(buf), spill, output_dir)
        except (aiohttp.ClientError, OSError) as exc:
            h, b = problem(500, f"{exc!r}", "inference-connection")
            return _Result(500, h, b, None, output_dir, worker_error=True)
        finally:
            resp.release()

    async def _deliver(
        self, result: _Result, channel: ResponseChannel, writer: ResultWriter, rid: str
    ) -> None:
        extra = await asyncio.to_thread(_extra_files, result.output_dir)
        if result.spill is not None or extra:
            name = await writer.store_large(result.body, result.spill, extra)
            if self.is_detached(rid):
                await writer.store_response_object(302, [], name, large=True)
            else:
                await channel.head(302, [(subjects.HDR_LARGE_RESULT, rid)], b"", end=True)
            return
        status, headers, body = result.status, result.headers, result.body
        if status >= 400 and not result.worker_error:
            # a container error is rewritten; the worker's own problem (function unreachable) is kept
            headers, body = problem(status, container_error_detail(body), "inference-service")
        await self._finish(channel, writer, rid, status, headers, body)

    async def _stream_late(
        self, stream: _Stream, channel: ResponseChannel, writer: ResultWriter, rid: str
    ) -> None:
        resp = stream.resp
        try:
            if self.is_detached(rid):
                body = await resp.read()
                await writer.store_body(resp.status, response_headers(resp), body)
                return
            await channel.head(resp.status, response_headers(resp))
            while chunk := await resp.content.readany():
                await channel.data(chunk)
            await channel.end()
        except (aiohttp.ClientError, BodyError, OSError) as exc:
            await self._fail(channel, exc)
        finally:
            resp.release()


class _Result:
    __slots__ = ("body", "headers", "output_dir", "spill", "status", "worker_error")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        spill: Path | None,
        output_dir: Path,
        *,
        worker_error: bool = False,
    ) -> None:
        self.worker_error = worker_error
        self.status = status
        self.headers = headers
        self.body = body
        self.spill = spill
        self.output_dir = output_dir


class _Stream:
    __slots__ = ("resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp


class _ProgressWatch:
    """The `progress` file the function writes: {"id", "progress": int, "partialResponse": {...}}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns = 0
        self.percent: int | None = None
        self.partial: Any = None

    def poll(self) -> bool:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return False
        if mtime == self.mtime_ns:
            return False
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return False  # half-written; the next look sees the whole file
        self.mtime_ns = mtime
        if isinstance(doc, dict):
            with contextlib.suppress(TypeError, ValueError):
                self.percent = int(doc.get("progress", 0))
            self.partial = doc.get("partialResponse")
        return True


def _extra_files(output_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in output_dir.iterdir() if p.name != PROGRESS_FILE and p.is_file())
    except OSError:
        return []


def _remove_dirs(*dirs: Path) -> None:
    for d in dirs:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(d)
        spill = d.parent / f"{d.name}.response"
        with contextlib.suppress(FileNotFoundError):
            spill.unlink()
