"""What the worker keeps for a detached (202) request: its status record (progress, then the final
result) in the status bucket, and large results as zips in the object store.

The gateway reads the same buckets (invocation/status.py); the formats are `shared/wire.py`'s
`StatusRecord` / `StoredResponse` and the stock NATS object-store layout.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import tempfile
import zipfile
from typing import IO, Any

import aiohttp

from fnplane.bus.buckets import CHUNK_BYTES, Buckets
from fnplane.compute.worker.request_dirs import RequestDir
from fnplane.shared import errors, subjects, wire

_COPY_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


class ResultUploadError(Exception):
    """A large result could not be zipped or stored (utils error 911)."""


class RequestRejected(Exception):
    """The request was cancelled (its status record says `rejected`): stop, write nothing more."""


class ResultWriter:
    """The status record of one detached request."""

    def __init__(self, buckets: Buckets, envelope: wire.Envelope, inline_result_bytes: int) -> None:
        self._buckets = buckets
        self._env = envelope
        self._inline_result_bytes = inline_result_bytes
        self.last: wire.StatusRecord | None = None

    def record(self, status: wire.RequestStatus, **fields: Any) -> wire.StatusRecord:
        e = self._env
        return wire.StatusRecord(
            request_id=e.request_id,
            function_id=e.function_id,
            version_id=e.version_id,
            nca_id=e.nca_id,
            status=status,
            idempotency=e.idempotency,
            **fields,
        )

    @property
    def envelope(self) -> wire.Envelope:
        return self._env

    async def exists(self) -> bool:
        return await self._buckets.get_status(self._env.version_id, self._env.request_id) is not None

    async def store(self, record: wire.StatusRecord) -> None:
        """Write the record; RequestRejected when the request was cancelled meanwhile (never
        overwritten: the cancel stands)."""
        self.last = record
        if not await self._buckets.put_status_unless_rejected(record):
            raise RequestRejected(self._env.request_id)

    async def start(self) -> None:
        """A detached request is about to run: in-progress from now (RequestRejected if cancelled)."""
        await self.store(self.record(wire.RequestStatus.IN_PROGRESS))

    async def refresh(self) -> None:
        """Write the last record again: its TTL counts from the last write, and the request still runs."""
        if self.last is not None and self.last.status is wire.RequestStatus.IN_PROGRESS:
            await self.store(self.last)

    async def store_progress(self, percent: int | None, partial: Any) -> None:
        await self.store(
            self.record(wire.RequestStatus.IN_PROGRESS, percent_complete=percent, partial_response=partial)
        )

    async def store_body(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if len(body) <= self._inline_result_bytes:
            response = wire.StoredResponse(status, headers, body_b64=base64.b64encode(body).decode())
        else:
            name = subjects.result_object(self._env.request_id)
            try:
                await self._buckets.put_result(self._env.version_id, name, body)
            except errors.FnplaneError as exc:
                raise ResultUploadError(f"response upload failed: {exc.detail}") from exc
            response = wire.StoredResponse(status, headers, object_name=name)
        await self._store_final(response)

    async def store_large_result(self, name: str) -> None:
        await self._store_final(wire.StoredResponse(302, [], object_name=name, large=True))

    async def _store_final(self, response: wire.StoredResponse) -> None:
        status = wire.nvcf_status(response.status)
        percent = 100 if status is wire.RequestStatus.FULFILLED else None
        await self.store(self.record(status, percent_complete=percent, response=response))

    async def store_large(
        self, body: bytes, spill: IO[bytes] | None, extra: list[str], output: RequestDir | None
    ) -> str:
        """Zip `{rid}.response` and the extra output files (NVCF large.go) into the object store.

        `spill` holds the response when it outgrew memory; the extra files are opened in the output
        dir without following links, and one that is no longer a regular file is left out."""
        rid = self._env.request_id

        def build(zip_file: IO[bytes]) -> None:
            with zipfile.ZipFile(zip_file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                if spill is not None:
                    spill.seek(0)
                    with zf.open(zipfile.ZipInfo(f"{rid}.response"), "w", force_zip64=True) as member:
                        shutil.copyfileobj(spill, member, _COPY_BYTES)
                else:
                    zf.writestr(f"{rid}.response", body)
                for name in extra:
                    source = output.open_output(name) if output is not None else None
                    if source is None:
                        continue
                    with source, zf.open(zipfile.ZipInfo(name), "w", force_zip64=True) as member:
                        shutil.copyfileobj(source, member, _COPY_BYTES)

        name = subjects.result_object(rid)
        try:
            # an unnamed file of the worker's own: nothing the function can see or replace
            zip_file = await asyncio.to_thread(tempfile.TemporaryFile)
            try:
                await asyncio.to_thread(build, zip_file)
                await asyncio.to_thread(zip_file.seek, 0)
                await self._buckets.put_result(self._env.version_id, name, zip_file)
            finally:
                await asyncio.to_thread(zip_file.close)
        except (OSError, zipfile.BadZipFile, errors.FnplaneError) as exc:
            raise ResultUploadError(f"large response upload failed: {exc}") from exc
        return name


async def download_assets(
    buckets: Buckets, assets: list[wire.AssetReference], output: RequestDir, timeout_s: float = 300.0
) -> None:
    """Each asset into `NVCF-ASSET-DIR/<assetId>`, concurrently, as new files (never through a link):
    from its signed URL at a gateway (NVCF's presigned GET), or from the bus when the reference carries
    none."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(ref: wire.AssetReference) -> None:
            fh = await asyncio.to_thread(output.create_asset, ref.asset_id)
            try:
                if ref.url:
                    await _fetch(session, ref, fh)
                else:
                    await buckets.get_into(ref.object_name, fh)
            finally:
                await asyncio.to_thread(fh.close)

        await asyncio.gather(*(one(ref) for ref in assets))


async def _fetch(session: aiohttp.ClientSession, ref: wire.AssetReference, fh: Any) -> None:
    try:
        async with session.get(ref.url, allow_redirects=False) as response:
            if response.status != 200:
                raise errors.UnavailableError(f"asset {ref.asset_id}: the gateway answered {response.status}")
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                await asyncio.to_thread(fh.write, chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # the caller gets a sentence, never aiohttp's repr (the worker's log has that)
        log.warning("asset %s not downloaded: %r", ref.asset_id, exc)
        raise errors.UnavailableError(
            f"asset {ref.asset_id} not downloaded: {_download_failure(exc)}"
        ) from exc


def _download_failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "it did not arrive whole within the download's time limit"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the download was cut short"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "the gateway serving it could not be reached"
    return "the download failed"
