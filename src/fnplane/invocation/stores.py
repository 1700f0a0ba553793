"""The gateway's NATS buckets: request status (KV), assets (KV), gateway state (KV) and the object store.

Objects are written and read in chunks (never whole in memory), in the stock NATS object-store layout,
so the worker can use nats-py's ObjectStore on the same bucket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from hashlib import sha256

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError as JsBadRequestError
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    ObjectNotFoundError,
)
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from fnplane.shared import errors, subjects
from fnplane.shared.models.invocation import OBJECT_TTL_S, STATUS_TTL_S, StatusRecord

CHUNK_BYTES = 128 * 1024


class GatewayStores:
    def __init__(self, js: JetStreamContext, object_ttl_s: float = OBJECT_TTL_S) -> None:
        self._js = js
        self._object_ttl_s = object_ttl_s
        self.status: KeyValue | None = None
        self.assets: KeyValue | None = None
        self.state: KeyValue | None = None
        self.objects: ObjectStore | None = None

    async def start(self) -> None:
        self.status = await self._kv(subjects.STATUS_BUCKET, STATUS_TTL_S)
        self.assets = await self._kv(subjects.ASSET_BUCKET, self._object_ttl_s)
        self.state = await self._kv(subjects.GATEWAY_BUCKET, None)
        try:
            self.objects = await self._js.object_store(subjects.OBJECT_BUCKET)
        except BucketNotFoundError:
            config = api.ObjectStoreConfig(
                bucket=subjects.OBJECT_BUCKET, ttl=self._object_ttl_s, storage=api.StorageType.FILE
            )
            try:
                self.objects = await self._js.create_object_store(subjects.OBJECT_BUCKET, config)
            except JsBadRequestError:
                self.objects = await self._js.object_store(subjects.OBJECT_BUCKET)

    async def _kv(self, bucket: str, ttl_s: float | None) -> KeyValue:
        try:
            return await self._js.key_value(bucket)
        except BucketNotFoundError:
            config = api.KeyValueConfig(bucket=bucket, ttl=ttl_s, storage=api.StorageType.FILE)
            try:
                return await self._js.create_key_value(config)
            except JsBadRequestError:  # another gateway or a worker created it meanwhile
                return await self._js.key_value(bucket)

    async def signing_key(self) -> bytes:
        """The URL-signing key every gateway shares (created once, kept in NATS)."""
        assert self.state is not None
        with contextlib.suppress(KeyWrongLastSequenceError, JsBadRequestError):
            await self.state.create(subjects.SIGNING_KEY, secrets.token_bytes(32))
        entry = await self.state.get(subjects.SIGNING_KEY)
        assert entry.value is not None
        return entry.value

    # --- request status ----------------------------------------------------------------------------

    async def get_status(self, request_id: str) -> StatusRecord | None:
        assert self.status is not None
        try:
            entry = await self.status.get(subjects.status_key(request_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return StatusRecord.model_validate_json(entry.value)

    async def delete_status(self, request_id: str) -> None:
        assert self.status is not None
        with contextlib.suppress(KeyNotFoundError):
            await self.status.purge(subjects.status_key(request_id))

    # --- objects -----------------------------------------------------------------------------------

    async def put_stream(
        self, name: str, chunks: AsyncIterator[bytes], headers: dict[str, str] | None = None
    ) -> int:
        """Store an object from an async byte stream, CHUNK_BYTES per message; returns its size."""
        assert self.objects is not None
        bucket = subjects.OBJECT_BUCKET
        nuid = secrets.token_hex(11)
        chunk_subject = f"$O.{bucket}.C.{nuid}"
        stream = f"OBJ_{bucket}"
        digest = sha256()
        size = 0
        count = 0
        pending = bytearray()
        try:
            async for data in chunks:
                pending += data
                while len(pending) >= CHUNK_BYTES:
                    part = bytes(pending[:CHUNK_BYTES])
                    del pending[:CHUNK_BYTES]
                    await self._js.publish(chunk_subject, part)
                    digest.update(part)
                    size += len(part)
                    count += 1
            if pending:
                await self._js.publish(chunk_subject, bytes(pending))
                digest.update(pending)
                size += len(pending)
                count += 1
            info = api.ObjectInfo(
                name=name,
                bucket=bucket,
                nuid=nuid,
                size=size,
                chunks=count,
                headers=headers,
                mtime=datetime.now(UTC).isoformat(),
                digest="SHA-256=" + base64.urlsafe_b64encode(digest.digest()).decode(),
                options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
            )
            meta_subject = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
            await self._js.publish(
                meta_subject, json.dumps(info.as_dict()).encode(), headers={"Nats-Rollup": "sub"}
            )
        except BaseException:
            with contextlib.suppress(Exception):  # best effort cleanup of a half-written object
                await self._js.purge_stream(stream, subject=chunk_subject)
            raise
        return size

    async def object_info(self, name: str) -> api.ObjectInfo:
        assert self.objects is not None
        try:
            return await self.objects.get_info(name)
        except ObjectNotFoundError:
            raise errors.NotFoundError(f"object {name} not found") from None

    async def iter_object(self, info: api.ObjectInfo) -> AsyncIterator[bytes]:
        """The object's chunks one at a time (direct get by subject), so memory stays at one chunk."""
        stream = f"OBJ_{subjects.OBJECT_BUCKET}"
        chunk_subject = f"$O.{subjects.OBJECT_BUCKET}.C.{info.nuid}"
        seq = 1
        left = info.chunks or 0
        while left > 0:
            try:
                msg = await self._js.get_msg(stream, seq=seq, subject=chunk_subject, next=True)
            except JsNotFoundError:
                raise errors.NotFoundError("object chunks expired") from None
            if msg.data:
                yield msg.data
            seq = int(msg.seq or seq) + 1
            left -= 1

    async def delete_object(self, name: str) -> None:
        assert self.objects is not None
        with contextlib.suppress(ObjectNotFoundError, JsNotFoundError):
            await self.objects.delete(name)
