"""The closed bus: what a worker's credential lets it do, and what the server refuses (a real nats-server
closed as `fnplane up` closes it, the real gateway bus, credentials minted by the platform's issuer).

Version A's worker credential pulls A's requests and writes A's records; the same client is refused
(a permissions violation from the server, nothing delivered) for B's queue, B's subjects, B's status
records and results, the URL-signing key and the asset store. A positive control with B's credential
shows each refused thing is really there.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import api

from closed_bus import ClosedBus
from fnplane.bus.buckets import Buckets
from fnplane.bus.topology import ensure_consumer
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects, topology, wire

VERSION_A = str(uuid.uuid4())
VERSION_B = str(uuid.uuid4())


class Probe:
    """A raw nats-py client with one credential, collecting the server's refusals."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = Client()

    async def connect(self, url: str, creds: Path, worker_id: str) -> Probe:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        await self.nc.connect(
            url,
            user_credentials=str(creds),
            inbox_prefix=subjects.worker_inbox_prefix(worker_id),
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def refused(self, subject: str, *, kind: str = "publish") -> None:
        """The server answered a permissions violation naming `subject`."""
        needle = f"permissions violation for {kind} to" if kind == "publish" else "permissions violation"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(needle in e and subject.lower() in e for e in self.errors):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no permissions violation for {kind} {subject}; errors: {self.errors}")

    async def pull(self, version_id: str, worker_id: str, timeout_s: float = 2.0) -> list[str]:
        """Pull one request of `version_id`'s queue: the subjects delivered (none when refused)."""
        inbox = subjects.worker_pull_inbox(worker_id)
        sub = await self.nc.subscribe(inbox)
        try:
            await self.nc.publish(
                subjects.pull_request_subject(version_id),
                json.dumps({"batch": 1, "expires": int(timeout_s * 1e9)}).encode(),
                reply=inbox,
            )
            got = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=timeout_s)
                except nats.errors.TimeoutError:
                    return got
                if msg.data:  # a request (status messages such as the expiry have no payload)
                    got.append(msg.reply)
                    await msg.ack()
        finally:
            await sub.unsubscribe()


def envelope(version_id: str, request_id: str) -> wire.Envelope:
    return wire.Envelope(
        request_id=request_id,
        function_id="fn",
        version_id=version_id,
        function_name="f",
        nca_id="nca-a",
        subject="user",
        mode=wire.InvocationMode.PEXEC,
        method="POST",
        path="/",
        headers=[],
        reply_to=subjects.gateway_response_inbox("gw", request_id),
        body_from=subjects.gateway_body_inbox("gw", request_id),
        request_time=time.time(),
        poll_s=10.0,
        expires_at=time.time() + 60,
        heartbeat_s=5.0,
    )


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[tuple[ClosedBus, RequestBus]]:
    closed = ClosedBus(tmp_path)
    await closed.start()
    gateway = RequestBus(closed.url, GatewaySettings(), credential=closed.credentials.gateway())
    try:
        await gateway.start()
        for version in (VERSION_A, VERSION_B):
            await closed.prepare_version(version)
        yield closed, gateway
    finally:
        await gateway.aclose()
        await closed.aclose()


async def worker_probe(closed: ClosedBus, version_id: str, instance_id: str) -> tuple[Probe, str]:
    worker_id = f"{instance_id}.w1"
    probe = await Probe().connect(closed.url, closed.worker_creds(version_id, instance_id), worker_id)
    js = probe.nc.jetstream(timeout=2)
    await ensure_consumer(js, subjects.request_stream(version_id), topology.request_consumer())
    return probe, worker_id


async def test_a_worker_credential_reaches_its_own_version_only(bus):
    closed, gateway = bus
    rid_a, rid_b = str(uuid.uuid4()), str(uuid.uuid4())
    await gateway.publish(envelope(VERSION_A, rid_a), b"a")
    await gateway.publish(envelope(VERSION_B, rid_b), b"b")
    a, a_worker = await worker_probe(closed, VERSION_A, "inst-a")
    b, b_worker = await worker_probe(closed, VERSION_B, "inst-b")
    try:
        # its own queue: pulled
        assert len(await a.pull(VERSION_A, a_worker)) == 1
        # B's queue: refused, nothing delivered, the request is still B's
        assert await a.pull(VERSION_B, a_worker, timeout_s=1.0) == []
        await a.refused(subjects.pull_request_subject(VERSION_B))
        with pytest.raises(nats.errors.TimeoutError):
            await a.nc.jetstream(timeout=1).consumer_info(
                subjects.request_stream(VERSION_B), subjects.REQUEST_CONSUMER
            )
        await a.refused(f"$JS.API.CONSUMER.INFO.{subjects.request_stream(VERSION_B)}")
        assert len(await b.pull(VERSION_B, b_worker)) == 1  # positive control: B's worker gets it

        # B's subjects: no forged request, no cancel, no listening to B's cancels or B's inboxes
        await a.nc.publish(subjects.request_subject(VERSION_B, str(uuid.uuid4())), b"forged")
        await a.refused(subjects.request_subject(VERSION_B, ""))
        await a.nc.publish(subjects.cancel_subject(VERSION_B), rid_b.encode())
        await a.refused(subjects.cancel_subject(VERSION_B))
        await a.nc.subscribe(subjects.cancel_subject(VERSION_B))
        await a.refused(subjects.cancel_subject(VERSION_B), kind="subscription")
        await a.nc.subscribe(subjects.worker_subjects("inst-b"))
        await a.refused(subjects.worker_subjects("inst-b"), kind="subscription")
    finally:
        await a.nc.close()
        await b.nc.close()


async def worker_buckets(probe: Probe) -> Buckets:
    """The buckets as a worker opens them, on the probe's connection."""
    buckets = Buckets(probe.nc.jetstream(timeout=1), create_results=False)
    await buckets.open(topology.worker_buckets(), create=False)
    return buckets


def status_record(rid: str, version_id: str, status: wire.RequestStatus) -> wire.StatusRecord:
    return wire.StatusRecord(
        request_id=rid, function_id="fn", version_id=version_id, nca_id="nca", status=status
    )


async def test_a_worker_credential_reads_no_record_result_key_or_asset_it_did_not_write(bus):
    closed, gateway = bus
    rid = str(uuid.uuid4())
    b, _ = await worker_probe(closed, VERSION_B, "inst-b")
    a, _ = await worker_probe(closed, VERSION_A, "inst-a")
    try:
        # B's worker writes B's status record and a large result (what a detached request leaves)
        b_buckets = await worker_buckets(b)
        record = status_record(rid, VERSION_B, wire.RequestStatus.FULFILLED)
        await b_buckets.put_status(record)
        await b_buckets.put_result(VERSION_B, subjects.result_object(rid), b"secret result")
        # ... and the gateway (any gateway) reads both
        assert gateway.buckets is not None
        assert await gateway.buckets.get_status(VERSION_B, rid) == record
        assert (await gateway.buckets.result_info(VERSION_B, subjects.result_object(rid))).size == 13
        # an asset of some account, and the URL-signing key, exist
        await gateway.buckets.put_object(subjects.asset_object("nca-b", rid), b"asset bytes")
        assert await gateway.buckets.signing_key()

        a_buckets = await worker_buckets(a)
        # its own version's records: written and read back
        own = status_record(rid, VERSION_A, wire.RequestStatus.IN_PROGRESS)
        await a_buckets.put_status(own)
        assert await a_buckets.get_status(VERSION_A, rid) == own

        status_b = subjects.kv_subject(subjects.STATUS_BUCKET, subjects.status_key(VERSION_B, rid))
        with pytest.raises(nats.errors.TimeoutError):
            await a_buckets.get_status(VERSION_B, rid)
        await a.refused(f"$JS.API.DIRECT.GET.KV_{subjects.STATUS_BUCKET}.{status_b}")
        with pytest.raises(nats.errors.TimeoutError):  # nor by sequence, nor by a consumer
            await a.nc.jetstream(timeout=1).get_msg(f"KV_{subjects.STATUS_BUCKET}", seq=1)
        await a.refused(f"$JS.API.STREAM.MSG.GET.KV_{subjects.STATUS_BUCKET}")
        await a.nc.publish(status_b, b"overwritten")
        await a.refused(status_b)

        with pytest.raises(nats.errors.TimeoutError):
            await a.nc.jetstream(timeout=1).object_store(subjects.result_bucket(VERSION_B))
        await a.refused(f"$JS.API.STREAM.INFO.OBJ_{subjects.result_bucket(VERSION_B)}")

        with pytest.raises(nats.errors.TimeoutError):
            await a.nc.jetstream(timeout=1).key_value(subjects.GATEWAY_BUCKET)
        await a.refused(f"$JS.API.STREAM.INFO.KV_{subjects.GATEWAY_BUCKET}")
        key_subject = subjects.kv_subject(subjects.GATEWAY_BUCKET, subjects.SIGNING_KEY)
        with pytest.raises(nats.errors.TimeoutError):
            direct_get = f"$JS.API.DIRECT.GET.KV_{subjects.GATEWAY_BUCKET}.{key_subject}"
            await a.nc.request(direct_get, b"", timeout=1)
        await a.refused(f"$JS.API.DIRECT.GET.KV_{subjects.GATEWAY_BUCKET}")

        with pytest.raises(nats.errors.TimeoutError):
            await a.nc.jetstream(timeout=1).object_store(subjects.OBJECT_BUCKET)
        await a.refused(f"$JS.API.STREAM.INFO.OBJ_{subjects.OBJECT_BUCKET}")
        with pytest.raises(nats.errors.TimeoutError):
            await a.nc.jetstream(timeout=1).add_consumer(
                f"OBJ_{subjects.OBJECT_BUCKET}", deliver_subject=subjects.worker_subjects("inst-a")
            )
        await a.refused(f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.OBJECT_BUCKET}")
        await a.nc.subscribe(f"$O.{subjects.OBJECT_BUCKET}.>")
        await a.refused(f"$O.{subjects.OBJECT_BUCKET}.>", kind="subscription")
    finally:
        await a.nc.close()
        await b.nc.close()


async def test_a_status_bucket_from_an_older_home_is_readable_by_its_workers(tmp_path: Path):
    """A bucket made without reads by subject (older fnplane) gets them from the gateway's start, so a
    worker's scoped credential still reads its version's records."""
    closed = ClosedBus(tmp_path)
    await closed.start()
    try:
        nc = await closed.gateway_client()
        await nc.jetstream().create_key_value(api.KeyValueConfig(bucket=subjects.STATUS_BUCKET))
        await nc.close()
        gateway = RequestBus(closed.url, GatewaySettings(), credential=closed.credentials.gateway())
        await gateway.start()
        try:
            await closed.prepare_version(VERSION_A)
            a, _ = await worker_probe(closed, VERSION_A, "inst-a")
            try:
                buckets = await worker_buckets(a)
                rid = str(uuid.uuid4())
                record = status_record(rid, VERSION_A, wire.RequestStatus.IN_PROGRESS)
                await buckets.put_status(record)
                assert await buckets.get_status(VERSION_A, rid) == record
            finally:
                await a.nc.close()
        finally:
            await gateway.aclose()
    finally:
        await closed.aclose()
