"""The buckets of the request path, for gateways and workers alike: status records of detached
requests (keyed by version and request), the gateways' request index, asset records, gateway state
(KV), the asset object store and one result object store per version.

A worker opens only the status bucket and its version's result store: its credential allows nothing
else (shared/permissions.py).

Objects are written and read in chunks, never whole in memory, in the stock NATS object-store layout,
so nats-py's ObjectStore and ours read each other's objects. Record formats: `shared/wire.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from hashlib import sha256
from io import BufferedIOBase
from typing import TypeVar, cast

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError as JsApiError
from nats.js.errors import BadRequestError as JsBadRequestError
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    ObjectNotFoundError,
)
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.errors import ServiceUnavailableError as JsServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from fnplane.bus.topology import bind_buckets, ensure_bucket, ensure_buckets
from fnplane.shared import errors, subjects, topology, wire
from fnplane.shared.topology import OBJECT_TTL_S, STATUS_TTL_S, BucketSpec

CHUNK_BYTES = 128 * 1024
# JetStream's error code for a write past a stream's max_bytes (discard policy "new")
STORE_FULL = 10077
FULL_RETRY_AFTER_S = 60
# compare-and-set writes of a record retried this often when another writer came first
CAS_ATTEMPTS = 8

T = TypeVar("T")
# listing keys: the server sends what matches, then nothing; this long without a key ends the list
KEY_LIST_IDLE_S = 5.0
# a gateway starting beside a cluster that is still forming waits this long for the state bucket
STARTUP_RETRY_S = 30.0
STARTUP_RETRY_INTERVAL_S = 0.25


class Buckets:
    def __init__(self, js: JetStreamContext, *, create_results: bool = True) -> None:
        """`create_results`: a result store that does not exist is created (gateways; a worker's
        credential may only open its version's)."""
        self._js = js
        self._create_results = create_results
        self._status: KeyValue | None = None
        self._index: KeyValue | None = None
        self._assets: KeyValue | None = None
        self._results: dict[str, ObjectStore] = {}
        self.object_ttl_s = OBJECT_TTL_S
        self._state: KeyValue | None = None
        self._objects: ObjectStore | None = None
        self._idempotency: KeyValue | None = None
        # the status bucket's TTL as the server has it (whoever created it)
        self.status_ttl_s = STATUS_TTL_S

    async def open(self, specs: tuple[BucketSpec, ...], *, create: bool) -> None:
        """Open (the owner: create) every bucket of `specs`."""
        opened = await (ensure_buckets if create else bind_buckets)(self._js, specs)
        self._status = cast(KeyValue, opened[subjects.STATUS_BUCKET])
        self._index = cast(KeyValue | None, opened.get(subjects.REQUEST_INDEX_BUCKET))
        self._assets = cast(KeyValue | None, opened.get(subjects.ASSET_BUCKET))
        self._state = cast(KeyValue | None, opened.get(subjects.GATEWAY_BUCKET))
        self._objects = cast(ObjectStore | None, opened.get(subjects.OBJECT_BUCKET))
        for spec in specs:
            if spec.name == subjects.OBJECT_BUCKET and spec.ttl_s:
                self.object_ttl_s = spec.ttl_s
        self._idempotency = cast(KeyValue | None, opened.get(subjects.IDEMPOTENCY_BUCKET))  # gateways
        ttl = (await self._status.status()).ttl
        if ttl:
            self.status_ttl_s = float(ttl)

    # --- status records ----------------------------------------------------------------------------

    async def get_status(self, version_id: str, request_id: str) -> wire.StatusRecord | None:
        assert self._status is not None
        try:
            entry = await self._status.get(subjects.status_key(version_id, request_id))
        except KeyNotFoundError:
            return None
        return wire.decode_status(entry.value) if entry.value else None

    async def put_status(self, record: wire.StatusRecord) -> None:
        """Write (or rewrite: the bucket's TTL counts from the last write) a request's record."""
        assert self._status is not None
        try:
            key = subjects.status_key(record.version_id, record.request_id)
            await self._status.put(key, wire.encode_status(record))
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"status record not written: {exc!r}") from exc

    async def put_status_unless_rejected(self, record: wire.StatusRecord) -> bool:
        """Write the record unless the request was cancelled meanwhile (its record says `rejected`);
        False then. Compare-and-set on the record's revision, so a cancel is never overwritten."""

        def decide(current: wire.StatusRecord | None) -> tuple[wire.StatusRecord | None, bool]:
            if current is not None and current.status is wire.RequestStatus.REJECTED:
                return None, False
            return record, True

        try:
            return await self._change_status(record.version_id, record.request_id, decide)
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"status record not written: {exc!r}") from exc

    async def reject_status(self, version_id: str, request_id: str) -> wire.StatusRecord | None:
        """Mark a request that is not finished `rejected` (cancelled); returns the record as it was
        (unchanged when already final), None when there is none. Compare-and-set, like the worker's
        writes: a result written meanwhile is not overwritten."""

        def decide(
            current: wire.StatusRecord | None,
        ) -> tuple[wire.StatusRecord | None, wire.StatusRecord | None]:
            if current is None or current.is_final:
                return None, current
            return wire.rejected(current), current

        try:
            return await self._change_status(version_id, request_id, decide, create=False)
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"request not cancelled: {exc!r}") from exc

    async def _change_status(
        self,
        version_id: str,
        request_id: str,
        decide: Callable[[wire.StatusRecord | None], tuple[wire.StatusRecord | None, T]],
        *,
        create: bool = True,
    ) -> T:
        """Compare-and-set on a status record: `decide(current)` -> (the record to write, or None to
        leave it, and the result); retried when another writer came first."""
        assert self._status is not None
        key = subjects.status_key(version_id, request_id)
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await self._status.get(key)
                current = wire.decode_status(entry.value) if entry.value else None
                revision: int | None = entry.revision
            except KeyNotFoundError:
                current, revision = None, None
            new, result = decide(current)
            if new is None or (revision is None and not create):
                return result
            try:
                if revision is None:
                    await self._status.create(key, wire.encode_status(new))
                else:
                    await self._status.update(key, wire.encode_status(new), last=revision)
                return result
            except (KeyWrongLastSequenceError, JsBadRequestError):
                continue  # someone wrote it first: look again
        raise errors.UnavailableError(f"status record of {request_id} kept changing")

    async def delete_status(self, version_id: str, request_id: str) -> None:
        assert self._status is not None
        with contextlib.suppress(KeyNotFoundError):
            await self._status.purge(subjects.status_key(version_id, request_id))

    async def watch_status(
        self, version_id: str, request_id: str, timeout_s: float
    ) -> AsyncGenerator[wire.StatusRecord, None]:
        """Every new version of the record until `timeout_s` has passed (the current one first)."""
        assert self._status is not None
        watcher = await self._status.watch(subjects.status_key(version_id, request_id))
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

    # --- idempotency records (gateways) ------------------------------------------------------------

    async def claim_idempotency(
        self, key: str, record: wire.IdempotencyRecord
    ) -> wire.IdempotencyRecord | None:
        """Store `record` under `key` unless one is there: None when this call claimed the key, else
        the record of the request that claimed it first."""
        assert self._idempotency is not None, "the idempotency bucket is a gateway's"
        value = wire.encode_idempotency(record)
        try:
            for _ in range(CAS_ATTEMPTS):
                try:
                    await self._idempotency.create(key, value)
                    return None
                except (KeyWrongLastSequenceError, JsBadRequestError):
                    pass
                try:
                    entry = await self._idempotency.get(key)
                except KeyNotFoundError:
                    continue  # released meanwhile: claim again
                if entry.value:
                    return wire.decode_idempotency(entry.value)
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"idempotency key not checked: {exc!r}") from exc
        raise errors.UnavailableError("idempotency key not checked: it kept changing")

    async def get_idempotency(self, key: str) -> wire.IdempotencyRecord | None:
        assert self._idempotency is not None
        try:
            entry = await self._idempotency.get(key)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"idempotency key not read: {exc!r}") from exc
        return wire.decode_idempotency(entry.value) if entry.value else None

    async def put_idempotency(self, key: str, record: wire.IdempotencyRecord) -> None:
        assert self._idempotency is not None
        try:
            await self._idempotency.put(key, wire.encode_idempotency(record))
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"idempotency record not written: {exc!r}") from exc

    async def release_idempotency(self, key: str) -> None:
        """Forget a key whose request was never queued (a retry may claim it again)."""
        assert self._idempotency is not None
        with contextlib.suppress(KeyNotFoundError, NatsError, TimeoutError):
            await self._idempotency.purge(key)

    # --- request index (gateways) --------------------------------------------------------------------

    async def remember_version(self, request_id: str, version_id: str) -> None:
        """Note which version a request id belongs to (before its 202 or large result is answered)."""
        assert self._index is not None
        try:
            await self._index.put(subjects.index_key(request_id), version_id.encode())
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"request index not written: {exc!r}") from exc

    async def version_of(self, request_id: str) -> str | None:
        assert self._index is not None
        try:
            entry = await self._index.get(subjects.index_key(request_id))
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    # --- results (one object store per version) ------------------------------------------------------

    async def results(self, version_id: str) -> ObjectStore:
        """The version's result store, opened once (created when missing)."""
        store = self._results.get(version_id)
        if store is None:
            spec = topology.result_store(version_id, self.object_ttl_s)
            try:
                if self._create_results:
                    store = cast(ObjectStore, await ensure_bucket(self._js, spec))
                else:
                    store = await self._js.object_store(spec.name)
            except BucketNotFoundError:
                raise errors.UnavailableError(f"result store {spec.name} does not exist") from None
            except (NatsError, TimeoutError) as exc:
                raise errors.UnavailableError(f"result store not opened: {exc!r}") from exc
            self._results[version_id] = store
        return store

    async def put_result(self, version_id: str, name: str, data: bytes | BufferedIOBase) -> None:
        store = await self.results(version_id)
        try:
            await store.put(name, data)
        except (NatsError, TimeoutError) as exc:
            raise errors.UnavailableError(f"result {name} not stored: {exc!r}") from exc

    async def result_info(self, version_id: str, name: str) -> api.ObjectInfo:
        store = await self.results(version_id)
        try:
            return await store.get_info(name)
        except ObjectNotFoundError:
            raise errors.NotFoundError(f"result {name} not found") from None

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

    async def replace_asset(self, key: str, value: bytes) -> bool:
        """Write over an asset record that still exists (compare-and-set); False once it is deleted."""
        assert self._assets is not None
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await self._assets.get(key)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            try:
                await self._assets.update(key, value, last=entry.revision)
                return True
            except (KeyWrongLastSequenceError, JsBadRequestError):
                continue  # written (or deleted) meanwhile: look again
        raise errors.UnavailableError(f"asset record {key} kept changing")

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
        """The URL-signing key every gateway shares (created once, kept in NATS).

        Read at a gateway's start, which in a new cluster may come while the state bucket's stream
        still elects its leader or its subjects' interest still crosses the routes: the server then has
        no responder for a while, which is waited out (STARTUP_RETRY_S), not a crash."""
        assert self._state is not None
        deadline = asyncio.get_running_loop().time() + STARTUP_RETRY_S
        while True:
            try:
                with contextlib.suppress(KeyWrongLastSequenceError, JsBadRequestError):
                    await self._state.create(subjects.SIGNING_KEY, secrets.token_bytes(32))
                entry = await self._state.get(subjects.SIGNING_KEY)
                break
            except (NoStreamResponseError, NoRespondersError, NatsTimeoutError, JsServiceUnavailableError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(STARTUP_RETRY_INTERVAL_S)
        assert entry.value is not None
        return entry.value

    # --- objects -----------------------------------------------------------------------------------

    async def put_stream(
        self, name: str, chunks: AsyncIterator[bytes], headers: dict[str, str] | None = None
    ) -> int:
        """Store an object from an async byte stream, CHUNK_BYTES per message; returns its size."""
        bucket = subjects.OBJECT_BUCKET
        nuid = secrets.token_hex(11)
        chunk_subject = subjects.object_chunk_subject(bucket, nuid)
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
            meta_subject = subjects.object_meta_subject(
                bucket, base64.urlsafe_b64encode(name.encode()).decode()
            )
            await self._js.publish(
                meta_subject, json.dumps(info.as_dict()).encode(), headers={"Nats-Rollup": "sub"}
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):  # best effort cleanup of a half-written object
                await self._js.purge_stream(subjects.object_stream(bucket), subject=chunk_subject)
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
        bucket = info.bucket or subjects.OBJECT_BUCKET
        stream = subjects.object_stream(bucket)
        chunk_subject = subjects.object_chunk_subject(bucket, info.nuid or "")
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
