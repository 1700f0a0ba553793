"""The signal behind the gateway's immediate scale-from-zero wake (`RequestBus.has_workers`), on the real
queue: no worker before any instance started, a worker while one is idle and pulling and while one is
busy with a request (no immediate wake then: the delayed hint covers busy instances), none again once
the last worker is gone and its pull requests expired. The wake itself is tested through `fnplane up`
(tests/e2e/invocation/test_invocation_recovery_up.py)."""

from __future__ import annotations

import asyncio

from polling import wait_for

PULL = {"pull_expires_s": 0.5}


async def eventually(predicate) -> None:
    await wait_for(predicate, 10.0)


async def test_has_workers_follows_the_pulling_and_busy_workers(stack):
    fn = await stack.deploy(name="wake", inference_url="/slow?seconds=2")
    bus = stack.gateway.bus
    vid = fn["versionId"]
    assert await bus.has_workers(vid) is False  # no queue, no consumer yet
    port = await stack.function_process()
    worker = await stack.worker(fn, port, **PULL)

    async def present() -> bool:
        return await bus.has_workers(vid)

    async def absent() -> bool:
        return not await bus.has_workers(vid)

    await eventually(present)  # idle, one pull request open
    call = asyncio.create_task(stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={}))
    await eventually(lambda: _running(worker))
    assert await bus.has_workers(vid) is True  # its only slot is busy: nothing pulls, one in flight
    r = await call
    assert r.status_code == 200, r.text
    await worker.aclose()
    stack.pullers.remove(worker)
    await eventually(absent)


async def _running(worker) -> bool:
    return worker.in_flight > 0
