"""The wire contract: the gateway's real sender and receiver (invocation/bus.py) against the worker's
(compute/worker/bus.py) over a real nats-server, message by message: the queued request, body pulls,
head -> chunks -> end with credit flow control, heartbeats, cancel, and the status record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from closed_bus import ClosedBus
from fnplane.compute.worker.bus import BodyError, Delivery, WorkerBus
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.exchange import BodyReader, Exchange
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import errors, subjects, wire

VERSION = "0b9c8f9e-7a53-4d5e-8c43-3b1e2f6d7a10"
FUNCTION = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
WINDOW = 8
# how long a message may take between the two buses: generous, for a loaded CI machine (a bound,
# not a measurement: a lost message still fails the test)
DELIVERY_BOUND_S = 20.0
# the gateway looks for lost answers this soon after queueing (then at doubling intervals)
LOST_CHECK_S = 0.5


class Pair:
    """A gateway bus and a worker bus of one version on one nats-server."""

    def __init__(self, gateway: RequestBus, worker: WorkerBus) -> None:
        self.gateway = gateway
        self.worker = worker
        self.deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        # (request id, explicit)
        self.cancels: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    server = ClosedBus(tmp_path)  # the one `fnplane up` runs, closed
    url = await server.start()
    gateway: RequestBus | None = None
    worker: WorkerBus | None = None
    try:
        gateway = RequestBus(
            url,
            GatewaySettings(body_chunk_bytes=1000, lost_answer_check_after_s=LOST_CHECK_S),
            credential=server.credentials.gateway(),
        )
        await gateway.start()
        await server.prepare_version(VERSION)
        settings = WorkerSettings(
            response_window_chunks=WINDOW,
            credit_timeout_s=5.0,
            pull_expires_s=2.0,
            body_pull_timeout_s=1.0,
            nats_creds=str(server.worker_creds(VERSION, "worker-1")),
        )
        worker = await WorkerBus.connect(url, VERSION, "worker-1.a", settings)
        p = Pair(gateway, worker)

        async def on_delivery(delivery: Delivery) -> None:
            await p.deliveries.put(delivery)

        def on_cancel(request_id: str, explicit: bool) -> None:
            p.cancels.put_nowait((request_id, explicit))

        await worker.start(on_delivery, on_cancel)
        yield p
    finally:
        if worker is not None:
            await worker.aclose()
            await worker.close_connection()
        if gateway is not None:
            await gateway.aclose()
        await server.aclose()


def envelope(gateway: RequestBus, request_id: str, *, body_more: bool = False) -> wire.Envelope:
    now = time.time()
    return wire.Envelope(
        request_id=request_id,
        function_id=FUNCTION,
        version_id=VERSION,
        nca_id="nca",
        mode=wire.InvocationMode.DIRECT,
        method="PUT",
        path="/any/path?q=1",
        headers=[("X-Repeated", "1"), ("X-Repeated", "2")],
        reply_to=subjects.gateway_response_inbox(gateway.gateway_id, request_id),
        body_from=subjects.gateway_body_inbox(gateway.gateway_id, request_id),
        request_time=now,
        poll_s=60.0,
        expires_at=now + 3600,
        body_more=body_more,
    )


def chunked_receive(chunks: list[bytes]):
    """An ASGI receive channel handing out `chunks` (the client side of an HTTP server, not ours)."""
    messages = [
        {"type": "http.request", "body": c, "more_body": i + 1 < len(chunks)} for i, c in enumerate(chunks)
    ]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


async def next_item(exchange: Exchange):
    return await asyncio.wait_for(exchange.queue.get(), DELIVERY_BOUND_S)


async def test_request_response_and_credits_over_a_real_server(pair: Pair):
    gateway, worker = pair.gateway, pair.worker
    rid = "5a1c7d3e-0f6b-4c2a-9d8e-1b2c3d4e5f60"
    exchange = Exchange(rid, FUNCTION, VERSION, None)
    gateway.open(exchange)
    sent = envelope(gateway, rid)
    await gateway.publish(sent, b"first body bytes")
    await worker.top_up(1)
    delivery = await asyncio.wait_for(pair.deliveries.get(), DELIVERY_BOUND_S)
    assert delivery.envelope == sent
    assert delivery.inline == b"first body bytes"
    assert delivery.attempt == 1

    channel = worker.open_channel(delivery.envelope, delivery.attempt)
    await channel.head(207, [("X-Out", "a"), ("X-Out", "b")], b"h")
    head = await next_item(exchange)
    assert head == wire.HeadMessage(
        "1", wire.Head(207, [("X-Out", "a"), ("X-Out", "b")], window=WINDOW), b"h"
    )

    # the worker sends its whole window, then waits: the gateway's credits let the rest through
    chunks = [str(i).encode() for i in range(20)]
    sender = asyncio.create_task(_send_all(channel, chunks))
    received = [await _chunk(exchange) for _ in range(WINDOW)]
    await asyncio.sleep(0.2)
    assert exchange.queue.empty() and not sender.done()  # no credit yet: nothing more came
    batch = wire.credit_batch(WINDOW)
    while len(received) < len(chunks):
        await gateway.grant_credit(exchange, batch)
        received += [await _chunk(exchange) for _ in range(min(batch, len(chunks) - len(received)))]
    await asyncio.wait_for(sender, DELIVERY_BOUND_S)
    assert received == chunks
    assert await next_item(exchange) == wire.EndMessage("1", "stopped\nhere".replace("\n", " "))

    await delivery.keepalive(worker.nc)
    assert await next_item(exchange) == wire.AliveMessage("1")
    await delivery.ack()


async def _chunk(exchange: Exchange) -> bytes:
    item = await next_item(exchange)
    assert isinstance(item, wire.ChunkMessage) and item.attempt == "1"
    return item.data


async def _send_all(channel, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await channel.data(chunk)
    await channel.end(error="stopped\nhere")


# on demand (HTTP/1.1), and read ahead (HTTP/2) into memory, a file, or memory then a file
@pytest.mark.parametrize("spool_memory_bytes", [-1, 0, 1000, 1 << 20])
async def test_the_worker_pulls_a_large_body_chunk_by_chunk(pair: Pair, spool_memory_bytes: int):
    gateway, worker = pair.gateway, pair.worker
    rid = "6b2d8e4f-1a7c-4d3b-8e9f-2c3d4e5f6a71"
    body = BodyReader(
        chunked_receive([b"a" * 700, b"b" * 700, b"c" * 700]),
        limit=10_000,
        content_length=None,
        spool_memory_bytes=spool_memory_bytes,
    )
    inline, eof = await body.read(500)
    assert not eof
    exchange = Exchange(rid, FUNCTION, VERSION, body)
    gateway.open(exchange)
    sent = envelope(gateway, rid, body_more=True)
    offset = len(inline)
    pulled = bytearray(inline)
    while True:
        chunk = await worker.pull_body(sent, offset)
        pulled += chunk.data
        offset += len(chunk.data)
        if chunk.eof:
            break
    assert bytes(pulled) == b"a" * 700 + b"b" * 700 + b"c" * 700
    # a second delivery after a worker died cannot read the body again from the start
    with pytest.raises(BodyError, match="already consumed"):
        await worker.pull_body(sent, 0)


@pytest.mark.parametrize("spool_memory_bytes", [-1, 0])
async def test_a_client_slower_than_the_pull_timeout_still_delivers_its_body(
    pair: Pair, spool_memory_bytes: int
):
    # the gateway answers a pull within half the worker's timeout (1 s here) with what it has, maybe
    # nothing, and the worker pulls again: a client pausing 2.5 s mid-body was a 500 "did not answer"
    messages = [{"type": "http.request", "body": b"a" * 700, "more_body": True}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(2.5)
        return {"type": "http.request", "body": b"b" * 700, "more_body": False}

    gateway, worker = pair.gateway, pair.worker
    rid = "9d4f0a6b-3c9e-4f5d-a0b1-4e5f6a7b8c93"
    body = BodyReader(receive, limit=10_000, content_length=None, spool_memory_bytes=spool_memory_bytes)
    inline, eof = await body.read(500)
    assert not eof
    gateway.open(Exchange(rid, FUNCTION, VERSION, body))
    sent = envelope(gateway, rid, body_more=True)
    pulled, empty = bytearray(inline), 0
    while True:
        chunk = await worker.pull_body(sent, len(pulled))
        pulled += chunk.data
        empty += not chunk.data
        if chunk.eof:
            break
    assert bytes(pulled) == b"a" * 700 + b"b" * 700
    assert empty >= 2  # answered while the client was silent
    body.close()


async def test_cancel_reaches_the_worker_and_the_status_record_is_shared(pair: Pair):
    gateway, worker = pair.gateway, pair.worker
    rid = "7c3e9f5a-2b8d-4e4c-9f0a-3d4e5f6a7b82"
    await gateway.cancel(VERSION, rid)
    assert await asyncio.wait_for(pair.cancels.get(), DELIVERY_BOUND_S) == (rid, False)
    # a client's DELETE: told apart, so the worker stops a detached request too
    await gateway.cancel(VERSION, rid, explicit=True)
    assert await asyncio.wait_for(pair.cancels.get(), DELIVERY_BOUND_S) == (rid, True)

    record = wire.StatusRecord(
        request_id=rid,
        function_id=FUNCTION,
        version_id=VERSION,
        nca_id="nca",
        status=wire.RequestStatus.IN_PROGRESS,
        percent_complete=40,
    )
    await worker.buckets.put_status(record)
    assert gateway.buckets is not None
    assert await gateway.buckets.get_status(VERSION, rid) == record


async def test_an_answer_lost_on_the_bus_is_a_503_at_the_next_check(pair: Pair):
    """A worker took the request and finished it (its message left the queue), but no head reached the
    gateway (a NATS node died with it on the way): the caller is answered at once, not at its window's
    end. While the worker still holds the request, the checks leave it alone."""
    gateway, worker = pair.gateway, pair.worker
    rid = "9d2f4b6a-8c1e-4f3a-b5d7-2e4f6a8b0c13"
    exchange = Exchange(rid, FUNCTION, VERSION, None)
    gateway.open(exchange)
    await gateway.publish(envelope(gateway, rid), b"")
    await worker.top_up(1)
    delivery = await asyncio.wait_for(pair.deliveries.get(), DELIVERY_BOUND_S)
    # held (not acked): the checks at 0.5 s and 1.5 s find the message, and leave the request waiting
    await asyncio.sleep(4 * LOST_CHECK_S)
    assert exchange.queue.empty()
    await delivery.ack()
    lost = await asyncio.wait_for(exchange.queue.get(), DELIVERY_BOUND_S)
    assert isinstance(lost, errors.UnavailableError)
    assert "its answer was lost" in lost.detail


async def test_a_queue_that_does_not_answer_is_a_503_not_silence(tmp_path: Path):
    """The first request of a version makes its queue (a JetStream API call) and then publishes; when
    JetStream does not answer (here the server is gone; in a cluster, a stream leader being elected)
    both are tried again, then the caller gets UnavailableError, never an exception nobody hears."""
    server = ClosedBus(tmp_path, restart_limit=0)
    url = await server.start()
    gateway = RequestBus(
        url,
        GatewaySettings(publish_timeout_s=0.3, publish_attempts=2),
        credential=server.credentials.gateway(),
    )
    try:
        await gateway.start()
        await server.kill()
        rid = "3b5d7f9a-1c2e-4a6b-8d0f-4e6a8c0b2d15"
        with pytest.raises(errors.UnavailableError, match="could not queue the request"):
            await asyncio.wait_for(gateway.publish(envelope(gateway, rid), b""), DELIVERY_BOUND_S)
    finally:
        await gateway.aclose()
        await server.aclose()
