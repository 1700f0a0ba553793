"""The one owner of the bus topology: makes the server's streams, consumers and buckets match
`shared/topology.py`. Idempotent; every component calls it with the same declaration.

* `ensure_queue(spec)` creates a version's work queue, or updates it to `spec` (the gateway owns the
  limits; a worker that starts before any gateway published creates the queue with the declared
  defaults and never updates it, `update=False`).
* `ensure_consumer(stream, spec)` creates the durable consumer of the instances (kept if it exists).
* `ensure_buckets(specs)` creates the KV and object-store buckets (the gateway, at start) and
  `bind_buckets(specs)` only opens them (workers: a request reaches a worker only after a gateway
  started, so its buckets exist).

Every stream and bucket gets `FNPLANE_NATS_REPLICAS` copies (`BusSettings`): 1 on one server (the
embedded one), 3 on a JetStream cluster (docs/deploy.md). Every component of an installation must be
given the same value: one that differs would scale the shared streams up and down.
"""

from __future__ import annotations

import contextlib
import functools

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.bus.connection import Client
from fnplane.shared import subjects, topology
from fnplane.shared.topology import BucketKind, BucketSpec, ConsumerSpec, QueueSpec


class BusSettings(BaseSettings):
    """How the platform's JetStream state is kept (FNPLANE_NATS_*), the same for every component."""

    model_config = SettingsConfigDict(env_prefix="FNPLANE_NATS_")

    # copies of every stream and bucket: 1 on one server, 3 on a JetStream cluster (at most the
    # cluster's size; JetStream refuses more)
    replicas: int = Field(default=1, ge=1, le=5)


@functools.cache
def replicas() -> int:
    """The installation's replica count, read once per process."""
    return BusSettings().replicas


async def ensure_queue(js: JetStreamContext, spec: QueueSpec, *, update: bool = True) -> None:
    config = {**spec.stream_config(), "num_replicas": replicas()}
    try:
        await js.add_stream(**config)
    except BadRequestError:
        # it exists with other settings (another component's limits, or changed settings)
        if update:
            with contextlib.suppress(BadRequestError):  # e.g. storage cannot change in place
                await js.update_stream(**config)


async def ensure_version_queue(nc: Client, version_id: str, timeout_s: float) -> None:
    """The version's queue and result store exist (the agent, before a worker whose credential may
    create neither). The gateway applies its own limits and lifetimes to what it creates first."""
    js = nc.jetstream(timeout=timeout_s)
    spec = topology.request_queue(version_id)
    if not await queue_exists(js, spec.name):
        await ensure_queue(js, spec, update=False)
    await _bucket(js, topology.result_store(version_id), create=False)


async def queue_exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except NotFoundError:
        return False
    return True


async def ensure_consumer(js: JetStreamContext, stream: str, spec: ConsumerSpec) -> None:
    with contextlib.suppress(BadRequestError):  # exists with another ack wait: keep it
        await js.add_consumer(stream, **spec.consumer_config())


async def ensure_buckets(js: JetStreamContext, specs: tuple[BucketSpec, ...]) -> dict[str, object]:
    """Every bucket of `specs`, created when missing: {name: KeyValue | ObjectStore}."""
    return {spec.name: await _bucket(js, spec, create=True) for spec in specs}


async def bind_buckets(js: JetStreamContext, specs: tuple[BucketSpec, ...]) -> dict[str, object]:
    """Every bucket of `specs`, opened; created only when missing (nobody owns them yet)."""
    return {spec.name: await _bucket(js, spec, create=False) for spec in specs}


async def ensure_bucket(
    js: JetStreamContext, spec: BucketSpec, *, create: bool = True
) -> KeyValue | ObjectStore:
    """One bucket, opened (created when missing)."""
    return await _bucket(js, spec, create=create)


async def _bucket(js: JetStreamContext, spec: BucketSpec, *, create: bool) -> KeyValue | ObjectStore:
    storage = api.StorageType(str(spec.storage))
    if spec.kind is BucketKind.KEY_VALUE:
        if not create:
            with contextlib.suppress(BucketNotFoundError):
                return await js.key_value(spec.name)
        kv_config = api.KeyValueConfig(
            bucket=spec.name,
            ttl=spec.ttl_s,
            storage=storage,
            max_bytes=spec.max_bytes,
            direct=spec.direct,
            replicas=replicas(),
        )
        try:
            return await js.create_key_value(kv_config)
        except BadRequestError:  # exists (with its creator's TTL): open it, with our size bound
            await _bound_size(js, subjects.kv_stream(spec.name), spec.max_bytes)
            if spec.direct:
                await _allow_direct(js, subjects.kv_stream(spec.name))
            return await js.key_value(spec.name)
    if not create:
        with contextlib.suppress(BucketNotFoundError):
            return await js.object_store(spec.name)
    os_config = api.ObjectStoreConfig(
        bucket=spec.name, ttl=spec.ttl_s, storage=storage, max_bytes=spec.max_bytes, replicas=replicas()
    )
    try:
        return await js.create_object_store(spec.name, os_config)
    except BadRequestError:
        await _bound_size(js, subjects.object_stream(spec.name), spec.max_bytes)
        return await js.object_store(spec.name)


async def _bound_size(js: JetStreamContext, stream: str, max_bytes: int) -> None:
    """A bucket made before it had a size bound (or with another one) gets the declared one."""
    config = (await js.stream_info(stream)).config
    if config.max_bytes != max_bytes:
        config.max_bytes = max_bytes
        with contextlib.suppress(BadRequestError):  # e.g. smaller than what it holds: keep it
            await js.update_stream(config)


async def _allow_direct(js: JetStreamContext, stream: str) -> None:
    """A bucket made before reads by subject were needed (a home from an older fnplane): turn them on,
    or a worker's scoped credential could not read its own records."""
    info = await js.stream_info(stream)
    if not info.config.allow_direct:
        info.config.allow_direct = True
        with contextlib.suppress(BadRequestError):
            await js.update_stream(info.config)
