"""Worker death mid-request, detached results across a gateway restart, long h2c requests with PINGs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time

import h2.config
import h2.connection
import h2.events
import httpx

from fnplane.compute.worker.events import EventWriter
from fnplane.compute.worker.main import Worker
from fnplane.compute.worker.settings import WorkerSettings
from fnplane.invocation.app import create_gateway_app
from fnplane.invocation.settings import GatewaySettings
from fnplane.up.server import HttpServer


async def test_a_worker_killed_mid_request_is_replaced_by_another_instance(stack, tmp_path):
    fn = await stack.deploy(name="k", inference_url="/slow")
    env = {"FNPLANE_WORKER_ACK_WAIT_S": "2", "FNPLANE_WORKER_PROGRESS_INTERVAL_S": "0.5"}
    first_port = await stack.function_process()
    first = await stack.worker_process(fn, first_port, **env)
    marker = tmp_path / "marker"
    call = asyncio.create_task(
        stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}",
            headers={"NVCF-POLL-SECONDS": "30"},
            json={"seconds": 3, "marker": str(marker)},
        )
    )
    for _ in range(200):
        if marker.exists():
            break
        await asyncio.sleep(0.05)
    assert marker.exists(), "the first worker never started the request"
    second_port = await stack.function_process()
    await stack.worker_process(fn, second_port, **env)
    os.kill(first.pid, signal.SIGKILL)
    r = await asyncio.wait_for(call, 30)
    assert r.status_code == 200, r.text
    # answered by the second instance's function after JetStream redelivered the request
    second_pid = stack.processes[-2].pid
    assert r.json()["pid"] == second_pid


async def test_detached_results_survive_a_gateway_restart(stack):
    fn = await stack.deploy(name="d", inference_url="/slow")
    port = await stack.function_process()
    await stack.worker(fn, port)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 2}
    )
    assert r.status_code == 202
    rid = r.headers["nvcf-reqid"]
    await stack.gateway.aclose()  # the gateway that answered 202 is gone
    other = create_gateway_app(
        GatewaySettings(), stack.nats_url, stack.authority, stack.bus.credentials.gateway()
    )
    await other.start()
    from invocation_stack import free_port

    port2 = free_port()
    server = HttpServer(other, host="127.0.0.1", port=port2)
    await server.start("127.0.0.1")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port2}",
            timeout=30,
            headers={"Authorization": f"Bearer {stack.admin_key}"},
        ) as client:
            for _ in range(10):
                s = await client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
                if s.status_code != 202:
                    break
            assert s.status_code == 200 and s.json()["slept"] == 2
    finally:
        await server.aclose(2.0)
        await other.aclose()


async def test_long_h2c_request_stays_open_while_the_client_sends_pings(stack):
    fn = await stack.deploy(name="h2", inference_url="/slow")
    port = await stack.function_process()
    await stack.worker(fn, port)
    host, _, http_port = stack.url.split("://", 1)[1].partition(":")
    reader, writer = await asyncio.open_connection(host, int(http_port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = json.dumps({"seconds": 4}).encode()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"{host}:{http_port}"),
            (":path", f"/v2/nvcf/pexec/functions/{fn['id']}"),
            ("authorization", f"Bearer {stack.admin_key}"),
            ("content-type", "application/json"),
            ("nvcf-poll-seconds", "30"),
            ("content-length", str(len(body))),
        ],
    )
    conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    await writer.drain()
    status = None
    data = b""
    acks = 0
    done = False
    next_ping = time.monotonic()
    try:
        while not done:
            if time.monotonic() >= next_ping:
                conn.ping(os.urandom(8))
                writer.write(conn.data_to_send())
                await writer.drain()
                next_ping = time.monotonic() + 0.5
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            assert chunk, "the server closed the connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.PingAckReceived):
                    acks += 1
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
            writer.write(conn.data_to_send())
            await writer.drain()
    finally:
        writer.close()
    assert status == b"200"
    assert json.loads(data)["slept"] == 4
    assert acks >= 5


async def test_a_worker_whose_bus_connection_the_server_closed_exits(stack, tmp_path):
    # nats-py gives up on a connection the server closed with an error (here: a message over its
    # max_payload once headers are counted): the worker must end (the agent restarts it), not live on
    # as an instance that looks healthy and never pulls again
    fn = await stack.deploy(name="closed", inference_url="/echo")
    port = await stack.function_process()
    assignment = stack.assignment(fn, port)
    await stack.bus.prepare_version(assignment.version_id)
    settings = WorkerSettings(
        assignment=assignment.model_dump_json(by_alias=True),
        nats_url=stack.nats_url,
        nats_creds=str(stack.bus.worker_creds(assignment.version_id, assignment.instance_id)),
        function_port=port,
        health_poll_interval_s=0.2,
        request_root=str(tmp_path / "requests"),
    )
    worker = Worker(settings, EventWriter(io.StringIO()))
    await worker.start()
    try:
        for _ in range(200):
            if worker.puller is not None:
                break
            await asyncio.sleep(0.05)
        assert worker.bus is not None and worker.puller is not None
        nc = worker.bus.nc
        await nc.publish("x", b"y" * nc.max_payload, headers={"h": "v"})
        await asyncio.wait_for(worker.serve(), 10)
        assert worker.failed
    finally:
        await worker.aclose()
