"""A queued request lives at most FNPLANE_GATEWAY_REQUEST_TTL_S (NVCF REQUEST_TTL, 60 min; here 1 s): the
max age of the version's JetStream queue. A request nobody picked up is gone from the queue before the
gateway gives up on it, and a worker that starts afterwards never runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from invocation_stack import PYTHON, REPO, free_port, spawn, wait_port

from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects
from fnplane.shared.topology import STATUS_TTL_S

FAULT_FUNCTION = Path(__file__).with_name("fault_function.py")


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=0.5, worker_silence_s=5.0, request_ttl_s=1.0)


async def wait_messages(js, stream: str, count: int, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None and info.state.messages == count:
                return
            await asyncio.sleep(0.05)


async def test_an_unpicked_request_expires_from_its_queue(stack, tmp_path):
    fn = await stack.deploy(name="ttl", inference_url=f"/slow?seconds=0&marker={tmp_path / 'ran'}")
    stream = subjects.request_stream(fn["versionId"])
    nc = await stack.bus.gateway_client()
    try:
        js = nc.jetstream()
        call = asyncio.create_task(
            stack.client.post(
                f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "5"}, json={}
            )
        )
        await wait_messages(js, stream, 1)
        assert (await js.stream_info(stream)).config.max_age == 1.0
        await wait_messages(js, stream, 0)
        # expired by its max age while the gateway still waits (it purges only at the 504)
        assert not call.done()
        port = free_port()
        stack.processes.append(spawn([PYTHON, str(FAULT_FUNCTION), str(port)], cwd=REPO))
        await wait_port(port)
        await stack.worker(fn, port)
        r = await call
        assert r.status_code == 504
        assert not (tmp_path / "ran").exists()
    finally:
        await nc.close()


def test_the_request_ttl_cannot_outlive_the_status_records():
    with pytest.raises(ValueError, match="less than or equal"):
        GatewaySettings(request_ttl_s=STATUS_TTL_S + 1)
