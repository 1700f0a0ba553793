"""Long-running requests: a function that stays silent longer than the gateway's worker-silence timeout
(`worker_silence_s`, here 1 s) while the poll window (30 s) is open is not cut, because the worker sends
`alive` heartbeats (`progress_interval_s`) while the function works; over HTTP/1.1 and h2c with PINGs.
A worker whose own heartbeat setting is slower than the silence timeout beats at the pace each request
asks for (a third of the gateway's silence timeout), so mismatched settings do not cut responses."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from invocation_stack import PYTHON, REPO, host_for, spawn, wait_port

from fnplane.invocation.settings import GatewaySettings

FAULT_FUNCTION = Path(__file__).with_name("fault_function.py")
HEARTBEAT = {"progress_interval_s": 0.25}
FULL_BODY = b"first-chunk;rest-of-the-body"


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=0.5, worker_silence_s=1.0)


async def fault_function(stack) -> int:
    from invocation_stack import free_port

    port = free_port()
    stack.processes.append(spawn([PYTHON, str(FAULT_FUNCTION), str(port)], cwd=REPO))
    await wait_port(port)
    return port


async def test_a_function_silent_longer_than_the_silence_timeout_is_answered(stack):
    fn = await stack.deploy(name="silent", inference_url="/slow?seconds=4")
    port = await fault_function(stack)
    await stack.worker(fn, port, **HEARTBEAT)
    poll = {"NVCF-POLL-SECONDS": "30"}
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=poll, json={})
    assert r.status_code == 200, r.text
    assert r.json()["slept"] == 4 and r.headers["nvcf-status"] == "fulfilled"
    r = await stack.client.post(
        "/slow?seconds=4", headers={**poll, "Host": host_for(fn, stack.url)}, content=b""
    )
    assert r.status_code == 200, r.text
    assert r.json()["slept"] == 4


@pytest.mark.parametrize("length", ["1", "0"])
async def test_a_pause_in_the_middle_of_the_body_is_kept_alive_by_heartbeats(stack, length):
    fn = await stack.deploy(name="pause")
    port = await fault_function(stack)
    await stack.worker(fn, port, **HEARTBEAT)
    r = await stack.client.get(
        f"/pause?seconds=3&length={length}",
        headers={"NVCF-POLL-SECONDS": "30", "Host": host_for(fn, stack.url)},
    )
    assert r.status_code == 200
    assert r.content == FULL_BODY


async def test_a_pause_between_sse_events_is_kept_alive_on_pexec_and_direct(stack):
    fn = await stack.deploy(name="ssepause", inference_url="/pause?seconds=3&sse=1")
    port = await fault_function(stack)
    await stack.worker(fn, port, **HEARTBEAT)
    sse = {"Accept": "text/event-stream", "NVCF-POLL-SECONDS": "30"}
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=sse, json={})
    assert r.status_code == 200 and r.text == "data: 1\n\ndata: 2\n\n"
    r = await stack.client.get("/pause?seconds=3&sse=1", headers={**sse, "Host": host_for(fn, stack.url)})
    assert r.status_code == 200 and r.text == "data: 1\n\ndata: 2\n\n"


async def test_a_worker_set_to_heartbeat_slower_than_the_silence_timeout_follows_the_gateway(stack):
    """Mismatched settings in two processes: the worker's own interval (10 s) is ten times the gateway's
    silence timeout (1 s); the request tells the worker to beat every third of it, so a function silent
    for 3 s in the middle of its body is not cut (the cut on real silence: test_failures.py)."""
    fn = await stack.deploy(name="mismatch", inference_url="/pause?seconds=3&sse=1")
    port = await fault_function(stack)
    await stack.worker(fn, port, progress_interval_s=10.0)
    host = {"NVCF-POLL-SECONDS": "30", "Host": host_for(fn, stack.url)}
    r = await stack.client.get("/pause?seconds=3&length=0", headers=host)
    assert r.status_code == 200
    assert r.content == FULL_BODY
    sse = {"Accept": "text/event-stream", "NVCF-POLL-SECONDS": "30"}
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=sse, json={})
    assert r.status_code == 200 and r.text == "data: 1\n\ndata: 2\n\n"


async def h2_call(
    url: str, path: str, headers: list[tuple[str, str]], body: bytes, ping_every_s: float
) -> tuple[int, bytes, int]:
    """One h2c (prior knowledge) request that sends PING frames while it waits: (status, body, acks)."""
    host, _, port = url.split("://", 1)[1].partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    method = "POST" if body else "GET"
    request = [(":method", method), (":scheme", "http"), (":authority", f"{host}:{port}"), (":path", path)]
    conn.send_headers(1, request + headers + [("content-length", str(len(body)))], end_stream=not body)
    if body:
        conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    await writer.drain()
    status, data, acks, done = 0, b"", 0, False
    next_ping = time.monotonic()
    try:
        while not done:
            if time.monotonic() >= next_ping:
                conn.ping(os.urandom(8))
                writer.write(conn.data_to_send())
                await writer.drain()
                next_ping = time.monotonic() + ping_every_s
            try:
                chunk = await asyncio.wait_for(reader.read(65536), ping_every_s)
            except TimeoutError:
                continue
            assert chunk, "the server closed the connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.PingAckReceived):
                    acks += 1
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            writer.write(conn.data_to_send())
            await writer.drain()
    finally:
        writer.close()
    return status, data, acks


async def test_h2c_prior_knowledge_with_pings_on_silent_direct_and_pexec_requests(stack):
    fn = await stack.deploy(name="h2silent", inference_url="/slow?seconds=4")
    port = await fault_function(stack)
    await stack.worker(fn, port, **HEARTBEAT)
    auth = [("authorization", f"Bearer {stack.admin_key}"), ("nvcf-poll-seconds", "30")]
    status, data, acks = await h2_call(
        stack.url, f"/v2/nvcf/pexec/functions/{fn['id']}", auth, b"{}", ping_every_s=0.5
    )
    assert status == 200 and json.loads(data)["slept"] == 4 and acks >= 4
    # direct, with the function id header (h2 has no Host header to route by)
    status, data, acks = await h2_call(
        stack.url, "/pause?seconds=3", [*auth, ("function-id", fn["id"])], b"", ping_every_s=0.5
    )
    assert status == 200 and data == FULL_BODY and acks >= 3
