"""What the worker keeps in NATS: detached results (status bucket), large results and assets (object store).

The gateway reads the same buckets (invocation/status_store.py, invocation/objects.py); the formats are
the shared models `StatusRecord` / `StoredResponse` and the stock NATS object-store layout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import zipfile
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError as JsBadRequestError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from fnplane.shared import subjects
from fnplane.shared.models.invocation import (
    OBJECT_TTL_S,
    STATUS_TTL_S,
    AssetReference,
    InvocationEnvelope,
    RequestStatus,
    StatusRecord,
    StoredResponse,
    nvcf_status,
)


class WorkerStores:
    """The status bucket and the object store, bound on first use (most requests never need them)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._obs: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def status(self) -> KeyValue:
        async with self._lock:
            if self._kv is None:
                try:
                    self._kv = await self._js.key_value(subjects.STATUS_BUCKET)
                except BucketNotFoundError:
                    config = KeyValueConfig(
                        bucket=subjects.STATUS_BUCKET, ttl=STATUS_TTL_S, storage=StorageType.FILE
                    )
                    try:
                        self._kv = await self._js.create_key_value(config)
                    except JsBadRequestError:  # created meanwhile by a gateway
                        self._kv = await self._js.key_value(subjects.STATUS_BUCKET)
            return self._kv

    async def objects(self) -> ObjectStore:
        async with self._lock:
            if self._obs is None:
                try:
                    self._obs = await self._js.object_store(subjects.OBJECT_BUCKET)
                except BucketNotFoundError:
                    config = ObjectStoreConfig(
                        bucket=subjects.OBJECT_BUCKET, ttl=OBJECT_TTL_S, storage=StorageType.FILE
                    )
                    try:
                        self._obs = await self._js.create_object_store(subjects.OBJECT_BUCKET, config)
                    except JsBadRequestError:
                        self._obs = await self._js.object_store(subjects.OBJECT_BUCKET)
            return self._obs

    async def download_assets(self, assets: list[AssetReference], asset_dir: Path) -> None:
        """Each asset into `asset_dir/<assetId>`, concurrently (NVCF-ASSET-DIR)."""
        await asyncio.to_thread(asset_dir.mkdir, parents=True, exist_ok=True)
        obs = await self.objects()

        async def one(ref: AssetReference) -> None:
            fh = await asyncio.to_thread(open, asset_dir / ref.asset_id, "wb")
            try:
                await obs.get(ref.object_name, writeinto=fh)
            finally:
                await asyncio.to_thread(fh.close)

        await asyncio.gather(*(one(ref) for ref in assets))


class ResultWriter:
    """The status record of one detached request."""

    def __init__(self, stores: WorkerStores, envelope: InvocationEnvelope, inline_result_bytes: int) -> None:
        self._stores = stores
        self._env = envelope
        self._inline_result_bytes = inline_result_bytes
        self._last: StatusRecord | None = None

    def identity(self) -> dict[str, Any]:
        e = self._env
        return {
            "requestId": e.request_id,
            "functionId": e.function_id,
            "functionVersionId": e.version_id,
            "ncaId": e.nca_id,
        }

    async def exists(self) -> bool:
        kv = await self._stores.status()
        try:
            await kv.get(subjects.status_key(self._env.request_id))
        except KeyNotFoundError:
            return False
        return True

    async def store(self, record: StatusRecord) -> None:
        kv = await self._stores.status()
        self._last = record
        await kv.put(
            subjects.status_key(self._env.request_id), record.model_dump_json(by_alias=True).encode()
        )

    async def store_progress(self, percent: int | None, partial: Any) -> None:
        record = StatusRecord.model_validate(
            {
                **self.identity(),
                "status": RequestStatus.IN_PROGRESS,
                "percentComplete": percent,
                "partialResponse": partial,
            }
        )
        await self.store(record)

    async def store_body(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if len(body) <= self._inline_result_bytes:
            encoded = base64.b64encode(body).decode()
            response = StoredResponse.model_validate(
                {"status": status, "headers": headers, "bodyBase64": encoded}
            )
        else:
            obs = await self._stores.objects()
            name = subjects.result_object(self._env.request_id)
            await obs.put(name, body)
            response = StoredResponse.model_validate(
                {"status": status, "headers": headers, "objectName": name}
            )
        await self._store_final(response)

    async def store_response_object(
        self, status: int, headers: list[tuple[str, str]], name: str, large: bool
    ) -> None:
        await self._store_final(
            StoredResponse.model_validate(
                {"status": status, "headers": headers, "objectName": name, "large": large}
            )
        )

    async def _store_final(self, response: StoredResponse) -> None:
        percent = 100 if nvcf_status(response.status) is RequestStatus.FULFILLED else None
        await self.store(
            StatusRecord.model_validate(
                {
                    **self.identity(),
                    "status": nvcf_status(response.status),
                    "percentComplete": percent,
                    "response": response.model_dump(by_alias=True),
                }
            )
        )

    async def store_large(self, body: bytes, spill: Path | None, extra: list[Path]) -> str:
        """Zip `{rid}.response` and the extra output files (NVCF large.go) into the object store."""
        rid = self._env.request_id
        base = spill.parent if spill is not None else (extra[0].parent.parent if extra else Path("."))
        zip_path = base / f"{rid}.zip"

        def build() -> None:
            with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                if spill is not None:
                    zf.write(spill, arcname=f"{rid}.response")
                else:
                    zf.writestr(f"{rid}.response", body)
                for path in extra:
                    zf.write(path, arcname=path.name)

        await asyncio.to_thread(build)
        name = subjects.result_object(rid)
        obs = await self._stores.objects()
        fh = await asyncio.to_thread(open, zip_path, "rb")
        try:
            await obs.put(name, fh)
        finally:
            await asyncio.to_thread(fh.close)
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(zip_path.unlink)
        return name
