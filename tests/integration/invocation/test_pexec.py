"""pexec / exec semantics (invocation.md 3.1-3.3): 200, 202 + status, progress, 302, problem+json, 504."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile

import httpx
import pytest
from invocation_stack import sse_events

from fnplane.control.auth.api_keys import authorizations_for
from fnplane.shared import scopes, subjects

MiB = 1024 * 1024


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 256
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


async def deployed(stack, inference_url: str, concurrency: int = 2) -> dict:
    fn = await stack.deploy(name="px", inference_url=inference_url, max_concurrency=concurrency)
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=concurrency)
    return fn


async def test_pexec_returns_the_result_with_nvcf_headers(stack):
    fn = await deployed(stack, "/echo")
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"message": "hi"})
    assert r.status_code == 200
    assert r.json() == {"message": "hi"}
    assert r.headers["nvcf-status"] == "fulfilled"
    assert len(r.headers["nvcf-reqid"]) == 36
    assert r.headers["access-control-expose-headers"].lower() == "nvcf-reqid"
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}/versions/{fn['versionId']}", json={"a": 1}
    )
    assert r.status_code == 200 and r.json() == {"a": 1}


@pytest.mark.parametrize("value", ["abc", "3601", "1.5"])
async def test_poll_seconds_validation(stack, value):
    fn = await stack.deploy()
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": value}, json={}
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "NVCF-POLL-SECONDS"


async def test_202_then_status_200_from_the_status_endpoint(stack):
    fn = await deployed(stack, "/slow")
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 2.5}
    )
    assert r.status_code == 202
    assert r.headers["nvcf-status"] == "in-progress"
    rid = r.headers["nvcf-reqid"]
    deadline = time.monotonic() + 15
    while True:
        # a HEAD tells the status without taking the result
        h = await stack.client.head(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
        if h.status_code != 202:
            break
        assert time.monotonic() < deadline
    assert h.status_code == 200 and h.content == b"" and h.headers["nvcf-status"] == "fulfilled"
    s = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}")
    assert s.status_code == 200, s.text
    assert s.json()["slept"] == 2.5
    assert s.headers["nvcf-reqid"] == rid and s.headers["nvcf-status"] == "fulfilled"
    # a delivered result is gone, as on NVCF
    again = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}")
    assert again.status_code == 404


async def test_progress_file_gives_202_with_percent_complete(stack):
    fn = await deployed(stack, "/progress")
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}",
        headers={"NVCF-POLL-SECONDS": "10"},
        json={"steps": 3, "interval": 0.4},
    )
    assert r.status_code == 202
    assert 0 < int(r.headers["nvcf-percent-complete"]) < 100
    assert r.json() == {"step": 1}
    rid = r.headers["nvcf-reqid"]
    seen = [int(r.headers["nvcf-percent-complete"])]
    for _ in range(20):
        s = await stack.client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
        if s.status_code == 200:
            assert s.json() == {"done": True, "steps": 3}
            break
        assert s.status_code == 202
        seen.append(int(s.headers["nvcf-percent-complete"]))
    else:
        pytest.fail("never fulfilled")
    assert seen == sorted(seen) and len(set(seen)) >= 2


async def test_large_result_is_302_to_a_signed_zip_with_the_exact_bytes(stack):
    fn = await deployed(stack, "/large")
    size = 6 * MiB
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"bytes": size})
    assert r.status_code == 302, r.text
    rid = r.headers["nvcf-reqid"]
    assert r.headers["nvcf-status"] == "fulfilled"
    location = r.headers["location"]
    assert location.startswith(stack.url + "/")
    got = await stack.client.get(location)  # with the caller's bearer, as NVCF clients do
    assert got.status_code == 200
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        assert zf.read(f"{rid}.response") == pattern(size)
    tampered = location.replace("signature=", "signature=0")
    assert (await stack.client.get(tampered)).status_code == 403


async def test_result_over_the_bus_message_limit_but_under_5_mib_comes_back_whole(stack):
    # the worker buffers a pexec answer up to 5 MiB; NATS refuses (and disconnects) a message over its
    # 1 MiB max_payload, so such an answer was lost (503) and the worker never pulled again (504s)
    fn = await deployed(stack, "/large")
    for size in (MiB, 3 * MiB, 5 * MiB):
        r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"bytes": size})
        assert r.status_code == 200, r.text
        assert r.headers["nvcf-status"] == "fulfilled"
        assert r.headers["content-length"] == str(size)
        assert r.content == pattern(size)
    exec_body = {"requestBody": {"bytes": 2 * MiB}}
    r = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json=exec_body)
    assert r.status_code == 200 and r.json()["status"] == "fulfilled", r.text
    # a body sent up and echoed back (the seed's binary payloads)
    echo = await deployed(stack, "/echo")
    body = b"x" * (2 * MiB)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{echo['id']}", content=body, headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200 and r.content == body


async def test_extra_output_files_also_give_302(stack):
    fn = await deployed(stack, "/files")
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"name": "image.bin"})
    assert r.status_code == 302
    got = await stack.client.get(r.headers["location"])
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        assert zf.read("image.bin") == pattern(1000)
        assert b"image.bin" in zf.read(f"{r.headers['nvcf-reqid']}.response")


async def test_container_error_becomes_problem_json_with_the_same_status(stack):
    fn = await deployed(stack, "/status")
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"code": 422})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert doc["type"] == "urn:inference-service:problem-details:unprocessable-entity"
    assert doc["status"] == 422 and doc["detail"] == "function says 422"
    assert r.headers["nvcf-status"] == "errored"


async def test_no_worker_gives_504_and_the_queued_request_is_purged(stack):
    fn = await stack.deploy()
    started = time.monotonic()
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={}
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert r.content == b""
    assert r.headers["nvcf-status"] == "errored" and r.headers["nvcf-reqid"]
    assert elapsed >= 2.5  # poll (1 s) + grace (2 s)
    nc = await stack.bus.gateway_client()
    try:
        info = await nc.jetstream().stream_info(subjects.request_stream(fn["versionId"]))
        assert info.state.messages == 0
    finally:
        await nc.close()


async def test_client_disconnect_cancels_the_request_on_the_worker(stack, tmp_path):
    fn = await deployed(stack, "/slow")
    marker = tmp_path / "slow-marker"
    task = asyncio.create_task(
        stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"seconds": 30, "marker": str(marker)})
    )
    for _ in range(100):
        if marker.exists():
            break
        await asyncio.sleep(0.05)
    assert marker.exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancelled = tmp_path / "slow-marker.cancelled"
    for _ in range(100):
        if cancelled.exists():
            break
        await asyncio.sleep(0.05)
    assert cancelled.exists(), "the function's request was not cancelled"


async def test_sse_on_pexec_streams_events(stack):
    fn = await deployed(stack, "/sse")
    arrivals = []
    async with stack.client.stream(
        "POST",
        f"/v2/nvcf/pexec/functions/{fn['id']}",
        headers={"Accept": "text/event-stream"},
        json={"events": 4, "interval": 0.4},
    ) as r:
        assert r.status_code == 200
        text = ""
        async for chunk in r.aiter_text():
            if "data: " in chunk:
                arrivals.append(time.monotonic())
            text += chunk
    assert [e["n"] for e in sse_events(text)] == [0, 1, 2, 3]
    assert arrivals[-1] - arrivals[0] > 0.8


async def test_exec_envelope_wraps_the_result(stack):
    fn = await deployed(stack, "/echo")
    r = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json={"requestBody": {"x": [1, 2]}})
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "fulfilled" and doc["response"] == {"x": [1, 2]} and doc["percentComplete"] == 100
    assert doc["reqId"] == r.headers["nvcf-reqid"]
    bad = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json={"nope": 1})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ([], "requestHeader"),
        ("", "requestHeader"),
        ({"inputAssetReferences": ""}, "requestHeader.inputAssetReferences"),
        ({"inputAssetReferences": {}}, "requestHeader.inputAssetReferences"),
    ],
)
async def test_an_exec_header_of_the_wrong_type_is_400_even_when_empty(stack, header, field):
    fn = await deployed(stack, "/slow")
    body = {"requestHeader": header, "requestBody": {"seconds": 0}}
    r = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


async def test_exec_status_after_202(stack):
    fn = await deployed(stack, "/slow")
    r = await stack.client.post(
        f"/v2/nvcf/exec/functions/{fn['id']}",
        json={"requestHeader": {"pollDurationSeconds": 1}, "requestBody": {"seconds": 2}},
    )
    assert r.status_code == 202
    rid = r.json()["reqId"]
    for _ in range(10):
        s = await stack.client.get(f"/v2/nvcf/exec/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
        if s.status_code == 200:
            break
    assert s.json()["status"] == "fulfilled" and s.json()["response"]["slept"] == 2


async def test_request_paths_refuse_a_bad_credential_before_looking_the_request_up(stack):
    """401 for an unknown key and 403 without the scope, never the 404 of a missing request."""
    _, unscoped = await stack.components.auth.api_keys.issue(
        "nvcf-default", "probe", authorizations_for([scopes.LIST_FUNCTIONS])
    )
    rid = "00000000-0000-4000-8000-000000000000"
    calls = [
        ("GET", f"/v2/nvcf/pexec/status/{rid}"),
        ("GET", f"/v2/nvcf/exec/status/{rid}"),
        ("DELETE", f"/v2/nvcf/pexec/status/{rid}"),
        ("GET", f"/v2/nvcf/queues/{rid}/position"),
        ("GET", "/v2/nvcf/pexec/status/not-a-uuid"),
    ]
    async with httpx.AsyncClient(base_url=stack.url) as http:
        for method, path in calls:
            bad = await http.request(method, path, headers={"Authorization": "Bearer nvapi-unknown"})
            assert bad.status_code == 401, (path, bad.text)
            assert bad.headers["www-authenticate"].startswith("Bearer")
            refused = await http.request(method, path, headers={"Authorization": f"Bearer {unscoped}"})
            assert refused.status_code == 403, (path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"


async def test_the_first_of_two_authorization_headers_is_the_credential(stack):
    # the limiter counted the first and the gateway authorized the last: a bogus first header gave
    # every request a credential slot of its own
    fn = await deployed(stack, "/echo")
    path = f"/v2/nvcf/pexec/functions/{fn['id']}"
    async with httpx.AsyncClient(base_url=stack.url) as http:
        forged_first = [
            ("Authorization", "Bearer nvapi-bogus"),
            ("Authorization", f"Bearer {stack.admin_key}"),
        ]
        r = await http.post(path, headers=forged_first, json={"a": 1})
        assert r.status_code == 401, r.text
        r = await http.post(path, headers=forged_first[::-1], json={"a": 1})
        assert r.status_code == 200 and r.json() == {"a": 1}


async def test_status_of_unknown_request_is_404(stack):
    r = await stack.client.get("/v2/nvcf/pexec/status/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        assert (
            await anonymous.get("/v2/nvcf/pexec/status/00000000-0000-4000-8000-000000000000")
        ).status_code == 401
