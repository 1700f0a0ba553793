"""The buckets of the request path, for gateways and workers alike: status records of detached
requests, asset records, gateway state (KV) and the object store (assets, large results).

Objects are written and read in chunks, never whole in memory, in the stock NATS object-store layout,
so nats-py's ObjectStore and ours read each other's objects. Record formats: `shared/wire.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from hashlib import sha256
from io import BufferedIOBase
from typing import cast

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError as JsApiError
from nats.js.errors import BadRequestError as JsBadRequestError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, ObjectNotFoundError
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from fnplane.bus.topology import bind_buckets, ensure_buckets
from fnplane.shared import errors, subjects, wire
from fnplane.shared.topology import STATUS_TTL_S, BucketSpec

CHUNK_BYTES = 128 * 1024
# JetStream's error code for a write past a stream's max_bytes (discard policy "new")
STORE_FULL = 10077
FULL_RETRY_AFTER_S = 60
# listing keys: the server sends what matches, then nothing; this long without a key ends the list
KEY_LIST_IDLE_S = 5.0


class Buckets:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._status: KeyValue | None = None
        self._assets: KeyValue | None = None
        self._state: KeyValue | None = None
        self._objects: ObjectStore | None = None
        # the status bucket's TTL as the server has it (whoever created it)
        self.status_ttl_s = STATUS_TTL_S

    async def open(self, specs: tuple[BucketSpec, ...], *, create: bool) -> None:
        """Open (the owner: create) every bucket of `specs`."""
        opened = await (ensure_buckets if create else bind_buckets)(self._js, specs)
        self._status = cast(KeyValue, opened[subjects.STATUS_BUCKET])
        self._assets = cast(KeyValue, opened[subjects.ASSET_BUCKET])
        self._state = cast(KeyValue, opened[subjects.GATEWAY_BUCKET])
        self._objects = cast(ObjectStore, opened[subjects.OBJECT_BUCKET])
        ttl = (await self._status.status()).ttl
        if ttl:
            self.status_ttl_s = float(ttl)

    # --- status records ----------------------------------------------------------------------------

    async def get_status(self, request_id: str) -> wire.StatusRecord | None:
        assert self._status is not None
        try:
            entry = await self._status.get(subjects.status_key(request_id))
        except KeyNotFoundError:
            return None
        return wire.decode_status(entry.value) if entry.value else None

    async def put_status(self, record: wire.StatusRecord) -> None:
        """Write (or rewrite: the bucket's TTL counts from the last write) a request's record."""
        assert self._status is not None
        try:
            await self._status.put(subjects.status_key(record.request_id), wire.encode_status(record))
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"status record not written: {exc!r}") from exc

    async def delete_status(self, request_id: str) -> None:
        assert self._status is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._status.purge(subjects.status_key(request_id))

    async def watch_status(
        self, request_id: str, timeout_s: float
    ) -> AsyncGenerator[wire.StatusRecord, None]:
        """Every new version of the record until `timeout_s` has passed (the current one first)."""
        assert self._status is not None
        watcher = await self._status.watch(subjects.status_key(request_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    entry = await watcher.updates(timeout=left)
                except NatsTimeoutError:
                    return
                if entry is not None and entry.value:
                    yield wire.decode_status(entry.value)
        finally:
            with contextlib.suppress(Exception):  # the watcher's consumer may already be gone
                await watcher.stop()

    # --- asset records -----------------------------------------------------------------------------

    async def get_asset(self, key: str) -> bytes | None:
        assert self._assets is not None
        try:
            entry = await self._assets.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or None

    async def put_asset(self, key: str, value: bytes) -> None:
        assert self._assets is not None
        await self._assets.put(key, value)

    async def delete_asset(self, key: str) -> None:
        assert self._assets is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._assets.purge(key)

    async def asset_keys(self, pattern: str) -> list[str]:
        """Keys matching a subject pattern, filtered by the server (nats-py's keys() scans the bucket)."""
        assert self._assets is not None
        watcher = await self._assets.watch(pattern, ignore_deletes=True, meta_only=True)
        keys = []
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=KEY_LIST_IDLE_S)
                except NatsTimeoutError:
                    break
                if entry is None:
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()
        return keys

    # --- gateway state -----------------------------------------------------------------------------

    async def signing_key(self) -> bytes:
        """The URL-signing key every gateway shares (created once, kept in NATS)."""
        assert self._state is not None
        with contextlib.suppress(KeyWrongLastSequenceError, JsBadRequestError):
            await self._state.create(subjects.SIGNING_KEY, secrets.token_bytes(32))
        entry = await self._state.get(subjects.SIGNING_KEY)
        assert entry.value is not None
        return entry.value

    # --- objects -----------------------------------------------------------------------------------

    async def put_stream(
        self, name: str, chunks: AsyncIterator[bytes], headers: dict[str, str] | None = None
    ) -> int:
        """Store an object from an async byte stream, CHUNK_BYTES per message; returns its size."""
        bucket = subjects.OBJECT_BUCKET
        nuid = secrets.token_hex(11)
        chunk_subject = f"$O.{bucket}.C.{nuid}"
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
        except BaseException as exc:
            with contextlib.suppress(Exception):  # best effort cleanup of a half-written object
                await self._js.purge_stream(f"OBJ_{bucket}", subject=chunk_subject)
            if isinstance(exc, JsApiError) and exc.err_code == STORE_FULL:
                raise errors.TooManyRequestsError(
                    "the object store is full (its max_bytes); retry once stored objects expired",
                    retry_after_s=FULL_RETRY_AFTER_S,
                ) from None
            raise
        return size

    async def put_object(self, name: str, data: bytes | BufferedIOBase) -> None:
        """Store bytes or a file's content as one object (nats-py's ObjectStore layout)."""
        assert self._objects is not None
        try:
            await self._objects.put(name, data)
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"object {name} not stored: {exc!r}") from exc

    async def get_into(self, name: str, fh: BufferedIOBase) -> None:
        assert self._objects is not None
        try:
            await self._objects.get(name, writeinto=fh)
        except ObjectNotFoundError:
            raise errors.NotFoundError(f"object {name} not found") from None
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"object {name} not read: {exc!r}") from exc

    async def object_info(self, name: str) -> api.ObjectInfo:
        assert self._objects is not None
        try:
            return await self._objects.get_info(name)
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
        assert self._objects is not None
        with contextlib.suppress(ObjectNotFoundError, JsNotFoundError):
            await self._objects.delete(name)
