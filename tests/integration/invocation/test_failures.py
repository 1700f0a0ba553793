"""Failures in the middle of a request, with real worker and function processes:

* the worker process dies after the response head went out -> the client's response is cut (a protocol
  error within the gateway's silence timeout), never a hang;
* the worker dies while it works on a detached (202) request -> JetStream redelivers the request to
  another instance, which finishes it detached, and the status endpoint serves the result;
* the function process dies mid-request -> the worker answers a problem+json 500
  (`urn:inference-connection:...`) before the head, or cuts the streamed response after it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from invocation_stack import free_port, host_for
from prometheus_client import REGISTRY
from test_long_running import fault_function

from fnplane.invocation.settings import GatewaySettings

FAST_REDELIVERY = {"FNPLANE_WORKER_ACK_WAIT_S": "2", "FNPLANE_WORKER_PROGRESS_INTERVAL_S": "0.3"}


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=0.5, worker_silence_s=1.5)


async def wait_for_file(path, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)


async def test_worker_death_after_the_head_cuts_the_response_instead_of_hanging(stack):
    fn = await stack.deploy(name="wdeath")
    port = await fault_function(stack)
    worker = await stack.worker_process(fn, port, **FAST_REDELIVERY)
    headers = {"NVCF-POLL-SECONDS": "30", "Host": host_for(fn, stack.url)}
    async with stack.client.stream("GET", "/pause?seconds=20&length=0", headers=headers) as r:
        assert r.status_code == 200 and r.headers["nvcf-status"] == "fulfilled"
        chunks = r.aiter_raw()
        first = await anext(chunks)
        assert first.startswith(b"first")
        os.kill(worker.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in chunks:
                pass
    assert time.monotonic() - started < 10  # the 1.5 s silence timeout, not the function's 20 s


async def test_worker_death_on_a_detached_request_is_redelivered_and_finished(stack, tmp_path):
    marker = tmp_path / "marker"
    fn = await stack.deploy(name="detdeath", inference_url=f"/slow?seconds=3&marker={marker}")
    first_port = await fault_function(stack)
    first = await stack.worker_process(fn, first_port, **FAST_REDELIVERY)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={}
    )
    assert r.status_code == 202 and r.headers["nvcf-status"] == "in-progress"
    rid = r.headers["nvcf-reqid"]
    await wait_for_file(marker)
    os.kill(first.pid, signal.SIGKILL)
    marker.unlink()
    second_port = await fault_function(stack)
    await stack.worker_process(fn, second_port, **FAST_REDELIVERY)
    await wait_for_file(marker)  # the request was redelivered to the second instance
    assert int(marker.read_text()) == stack.processes[-2].pid
    deadline = time.monotonic() + 20
    while True:
        s = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "2"})
        if s.status_code != 202 or time.monotonic() > deadline:
            break
    assert s.status_code == 200, s.text
    assert s.json()["pid"] == stack.processes[-2].pid and s.headers["nvcf-status"] == "fulfilled"
    # delivered: the record is gone
    s = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}")
    assert s.status_code == 404


@pytest.mark.parametrize("mode", ["pexec", "direct"])
async def test_function_killed_before_it_answers_gives_a_problem_500(stack, tmp_path, mode):
    marker = tmp_path / "marker"
    fn = await stack.deploy(name="fkill", inference_url=f"/slow?seconds=20&marker={marker}")
    port = await fault_function(stack)
    await stack.worker(fn, port)
    if mode == "pexec":
        call = stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "30"}, json={}
        )
    else:
        call = stack.client.get(
            f"/slow?seconds=20&marker={marker}",
            headers={"NVCF-POLL-SECONDS": "30", "Host": host_for(fn, stack.url)},
        )
    task = asyncio.create_task(call)
    await wait_for_file(marker)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    r = await asyncio.wait_for(task, 10)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["nvcf-status"] == "errored" and r.headers["nvcf-reqid"]
    doc = r.json()
    assert doc["status"] == 500 and doc["type"], doc
    assert doc["type"].startswith("urn:inference-connection:problem-details:"), doc


async def test_an_unreachable_function_is_a_500_that_names_no_address_or_python_error(stack):
    fn = await stack.deploy(name="nobody-home")
    # nothing listens there, and the first delivery is the last (it would wait for the function else)
    await stack.worker(fn, free_port(), unreachable_attempts=1)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "30"}, json={}
    )
    assert r.status_code == 500 and r.headers["nvcf-status"] == "errored"
    doc = r.json()
    assert doc["type"].startswith("urn:inference-connection:problem-details:"), doc
    assert doc["detail"] == "cannot connect to the function: connection refused", doc
    # the platform's answer, not the function's: counted as NVCF counts the platform's errors
    labels = {"http_status_code": "500", "function_id": fn["id"]}
    assert REGISTRY.get_sample_value("app_invocation_error_total", labels) == 1


async def test_a_request_that_finds_the_function_down_waits_for_it_in_the_queue(stack):
    """Nothing reached the function (its process restarting): the request goes back to the queue and
    the instance takes no more until it is healthy again; the caller gets the function's answer."""
    fn = await stack.deploy(name="restarting")
    port = free_port()
    puller = await stack.worker(fn, port)  # nothing listens there yet
    checks: list[bool] = []
    puller.on_unreachable = lambda: checks.append(True)  # the worker's health monitor is told
    call = asyncio.create_task(
        stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "30"}, json={"x": 1}
        )
    )
    for _ in range(200):
        if checks:
            break
        await asyncio.sleep(0.05)
    assert checks, "the request never found the function down"
    assert not call.done()
    await stack.function_process(port)  # the function is back; its health check passes
    puller.set_ready(True)
    r = await asyncio.wait_for(call, 20)
    assert r.status_code == 200, r.text
    assert r.json() == {"x": 1}


async def test_function_dying_mid_body_gives_a_problem_on_pexec_and_a_cut_direct_response(stack):
    fn = await stack.deploy(name="crash", inference_url="/crash?after=1000")
    port = await fault_function(stack)
    await stack.worker(fn, port)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "30"}, json={}
    )
    assert r.status_code == 500 and r.headers["nvcf-status"] == "errored"
    assert r.json()["type"].startswith("urn:inference-connection:problem-details:")

    port = await fault_function(stack)  # the first one exited
    fn2 = await stack.deploy(name="crash2")
    await stack.worker(fn2, port)
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        await stack.client.get(
            "/crash?after=1000", headers={"NVCF-POLL-SECONDS": "30", "Host": host_for(fn2, stack.url)}
        )
    assert time.monotonic() - started < 10
