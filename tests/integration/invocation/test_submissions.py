"""Asynchronous submission, cancel and idempotency keys against a real gateway, worker, nats-server and
function (the end-to-end test through `fnplane up` is tests/e2e/invocation/test_async_submit_up.py):
what needs a second gateway, a second account, or a look into the status bucket."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from fnplane.control.auth.api_keys import authorizations_for
from fnplane.invocation.app import create_gateway_app
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import scopes

ASYNC = {"Prefer": "respond-async"}


async def final_record(stack, request_id: str, timeout_s: float = 20.0):
    """The request's status record once final, read from the bucket (a status call would consume it)."""
    buckets = stack.gateway.bus.buckets
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        version_id = await buckets.version_of(request_id)
        record = await buckets.get_status(version_id, request_id) if version_id else None
        if record is not None and record.is_final:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"{request_id} not final")


async def test_cancel_of_a_finished_request_is_409_and_its_result_stays(stack):
    fn = await stack.deploy(name="sub", inference_url="/slow", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port)
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=ASYNC, json={"seconds": 0})
    assert r.status_code == 202, r.text
    rid = r.headers["nvcf-reqid"]
    await final_record(stack, rid)
    c = await stack.client.delete(f"/v2/nvcf/pexec/status/{rid}")
    assert c.status_code == 409, c.text
    assert c.headers["content-type"] == "application/problem+json"
    s = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}")
    assert s.status_code == 200 and s.json()["slept"] == 0


async def test_another_account_cannot_see_cancel_or_locate_a_request(stack):
    fn = await stack.deploy(name="sub", inference_url="/slow", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port)
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=ASYNC, json={"seconds": 3})
    rid = r.headers["nvcf-reqid"]
    assert (await stack.control.post("/v2/nvcf/accounts/team-b", json={"name": "TeamB"})).status_code == 200
    _, key = await stack.components.auth.api_keys.issue(
        "team-b", "team-b-owner", authorizations_for([scopes.INVOKE_FUNCTION, scopes.QUEUE_DETAILS])
    )
    async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}) as other:
        for answer in (
            await other.delete(f"/v2/nvcf/pexec/status/{rid}"),
            await other.get(f"/v2/nvcf/pexec/status/{rid}"),
            await other.get(f"/v2/nvcf/queues/{rid}/position"),
        ):
            assert answer.status_code == 404, answer.text
            # as for a request that does not exist: nothing of the owner's function is told
            assert answer.json()["detail"] == f"request {rid} not found"
        # the same Idempotency-Key in another account is another key
        key_header = {"Idempotency-Key": '"shared-key"'}
        mine = await stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={**key_header, **ASYNC}, json={"seconds": 0}
        )
        theirs = await other.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={**key_header, **ASYNC}, json={"seconds": 0}
        )
        assert mine.status_code == 202 and theirs.status_code == 404  # they cannot see the function
    # still the owner's: not cancelled by the attempts above
    assert (await final_record(stack, rid)).status.value == "fulfilled"


async def test_an_idempotency_key_behaves_the_same_through_another_gateway(stack, gateway_settings):
    fn = await stack.deploy(name="sub", inference_url="/slow", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port)
    other = create_gateway_app(
        gateway_settings, stack.nats_url, stack.authority, stack.bus.credentials.gateway()
    )
    await other.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other),
            base_url="http://other",
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=30,
        ) as second:
            key = {"Idempotency-Key": f'"{uuid.uuid4()}"', "NVCF-POLL-SECONDS": "20"}
            body = {"seconds": 1}
            path = f"/v2/nvcf/pexec/functions/{fn['id']}"
            first = asyncio.create_task(stack.client.post(path, headers=key, json=body))
            await asyncio.sleep(0.2)
            joined = await second.post(path, headers=key, json=body)
            answered = await first
            assert answered.status_code == joined.status_code == 200, (answered.text, joined.text)
            assert answered.headers["nvcf-reqid"] == joined.headers["nvcf-reqid"]
            assert answered.json() == joined.json()
            replay = await second.post(path, headers=key, json=body)
            assert replay.headers["nvcf-reqid"] == answered.headers["nvcf-reqid"]
            assert replay.json() == answered.json()
            changed = await second.post(path, headers=key, json={"seconds": 2})
            assert changed.status_code == 422 and changed.json()["field"] == "Idempotency-Key"
    finally:
        await other.aclose()


async def test_a_request_body_too_large_to_queue_whole_is_413(stack):
    fn = await stack.deploy(name="sub", inference_url="/echo", max_concurrency=1)
    limit = stack.gateway.settings.max_detached_body_bytes
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers=ASYNC, content=b"x" * (limit + 1)
    )
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("gateway_settings", [GatewaySettings(max_detached_body_bytes=64 * 1024 * 1024)])
async def test_a_body_over_the_bus_message_limit_is_413_and_the_gateway_lives_on(stack):
    # a body queued whole (an Idempotency-Key, Prefer: respond-async) over the NATS server's
    # max_payload once the envelope is counted: the server closed the gateway's connection for good
    # (every later invocation 503, /health 503); over it by itself: a 503
    fn = await stack.deploy(name="sub", inference_url="/echo", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port)
    max_payload = stack.gateway.bus.nc.max_payload
    host = {"Host": f"{fn['id']}.invocation.test"}
    for path, headers, size in (
        ("/echo", {**host, "Idempotency-Key": "edge"}, max_payload - 100),
        (f"/v2/nvcf/pexec/functions/{fn['id']}", ASYNC, max_payload + 1),
    ):
        r = await stack.client.post(path, headers=headers, content=b"x" * size)
        assert r.status_code == 413, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "as assets" in r.json()["detail"]
    r = await stack.client.post("/echo", headers={**host, "Idempotency-Key": "edge"}, content=b"fits")
    assert r.status_code == 200 and r.content == b"fits"  # the key was released, the gateway is alive


async def test_a_replayed_result_keeps_its_percent_complete(stack):
    fn = await stack.deploy(name="progress-replay", inference_url="/progress")
    port = await stack.function_process()
    await stack.worker(fn, port)
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"', "NVCF-POLL-SECONDS": "20"}
    body = {"steps": 2, "interval": 0.1}
    path = f"/v2/nvcf/pexec/functions/{fn['id']}"
    answered = await stack.client.post(path, headers=key, json=body)
    while answered.status_code == 202:  # progress first (a 202 with the partial response), then done
        status = f"/v2/nvcf/pexec/status/{answered.headers['nvcf-reqid']}"
        answered = await stack.client.get(status, headers={"NVCF-POLL-SECONDS": "5"})
    assert answered.status_code == 200, answered.text
    assert answered.headers["nvcf-percent-complete"] == "100"
    replay = await stack.client.post(path, headers=key, json=body)
    assert replay.status_code == 200 and replay.json() == answered.json()
    assert replay.headers["nvcf-reqid"] == answered.headers["nvcf-reqid"]
    assert replay.headers["nvcf-percent-complete"] == "100"
