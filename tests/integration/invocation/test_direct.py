"""Direct (Host-header / function-id header) invocation through the real gateway, bus and worker."""

from __future__ import annotations

import hashlib
import os
import time

import httpx
import pytest
from invocation_stack import host_for

from fnplane.invocation.settings import GatewaySettings

MiB = 1024 * 1024


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 256
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


@pytest.fixture
async def ready(stack):
    fn = await stack.deploy()
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=4)
    return fn


async def test_container_sees_nvcf_headers_path_and_query_but_not_authorization(stack, ready):
    fn = ready
    r = await stack.client.post(
        "/some/deep/path?name=John&x=%2F1",
        headers={"Host": host_for(fn, stack.url), "X-Custom": "kept"},
        json={"name": "John"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["rawPath"] == "/some/deep/path?name=John&x=%2F1"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert "authorization" not in headers
    assert headers["x-custom"] == "kept"
    assert headers["nvcf-reqid"] == r.headers["nvcf-reqid"]
    assert headers["nvcf-function-id"] == fn["id"]
    assert headers["nvcf-function-version-id"] == fn["versionId"]
    assert headers["nvcf-ncaid"] == "nvcf-default"
    for name in (
        "nvcf-sub",
        "nvcf-function-name",
        "nvcf-asset-dir",
        "nvcf-large-output-dir",
        "nvcf-max-response-size-bytes",
        "nvcf-backend",
        "nvcf-instancetype",
        "nvcf-region",
        "nvcf-env",
        "nvcf-poll-seconds",
    ):
        assert name in headers, name
    assert headers["nvcf-max-response-size-bytes"] == "5242880"
    assert r.headers["nvcf-status"] == "fulfilled"
    assert r.headers["access-control-expose-headers"].lower() == "nvcf-reqid"


async def test_version_host_and_routing_headers_select_the_function(stack, ready):
    fn = ready
    r = await stack.client.get("/x", headers={"Host": host_for(fn, stack.url, version=True)})
    assert r.status_code == 200 and r.json()["headers"]["NVCF-FUNCTION-VERSION-ID"] == fn["versionId"]
    r = await stack.client.delete(
        "/y?z=1", headers={"function-id": fn["id"], "function-version-id": fn["versionId"]}
    )
    assert r.status_code == 200 and r.json()["method"] == "DELETE" and r.json()["rawPath"] == "/y?z=1"


async def test_unknown_function_is_404_and_missing_bearer_401(stack, ready):
    r = await stack.client.get("/x", headers={"function-id": "00000000-0000-4000-8000-000000000000"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await stack.client.get("/x", headers={"function-id": ready["id"], "Authorization": ""})
    assert r.status_code == 401


async def test_multipart_and_binary_bodies_arrive_byte_exact(stack, ready):
    fn = ready
    host = host_for(fn, stack.url)
    payload = os.urandom(300 * 1024)
    request = stack.client.build_request(
        "PUT",
        "/my-cool-endpoint?abc=123",
        headers={"Host": host, "Accept": "application/octet-stream"},
        data={"metadata": "123"},
        files={"file": ("cool-file.zip", payload, "application/zip")},
    )
    sent = request.read()
    r = await stack.client.send(request)
    assert r.status_code == 200, r.text
    assert r.json()["bodySha256"] == hashlib.sha256(sent).hexdigest()
    assert r.json()["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    binary = os.urandom(MiB)
    r = await stack.client.post(
        "/echo", headers={"Host": host, "Content-Type": "application/octet-stream"}, content=binary
    )
    assert r.status_code == 200
    assert r.content == binary


async def test_streamed_request_body_without_length_is_byte_exact(stack, ready):
    chunks = [os.urandom(100_000) for _ in range(7)]

    async def body():
        for c in chunks:
            yield c

    r = await stack.client.post("/echo", headers={"Host": host_for(ready, stack.url)}, content=body())
    assert r.status_code == 200
    assert r.content == b"".join(chunks)


async def test_large_response_streams_inline_on_direct_invocation(stack, ready):
    size = 6 * MiB
    async with stack.client.stream(
        "GET", f"/large?bytes={size}", headers={"Host": host_for(ready, stack.url)}
    ) as r:
        assert r.status_code == 200
        assert "location" not in r.headers
        data = b"".join([c async for c in r.aiter_bytes()])
    assert len(data) == size and data == pattern(size)


async def test_container_errors_pass_through_untouched(stack, ready):
    r = await stack.client.get("/status?code=418", headers={"Host": host_for(ready, stack.url)})
    assert r.status_code == 418
    assert r.json() == {"error": "function says 418"}
    assert r.headers["nvcf-status"] == "errored"


async def test_sse_events_arrive_as_written(stack, ready):
    arrivals = []
    async with stack.client.stream(
        "POST",
        "/sse",
        headers={"Host": host_for(ready, stack.url), "Accept": "text/event-stream"},
        json={"events": 5, "interval": 0.4},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    # the first event reached the client long before the function wrote the last one
    assert arrivals[-1] - arrivals[0] > 1.2


@pytest.mark.parametrize("gateway_settings", [GatewaySettings(max_request_body_bytes=100_000)])
async def test_body_over_the_limit_is_413(stack, ready):
    r = await stack.client.post("/echo", headers={"Host": host_for(ready, stack.url)}, content=b"x" * 200_000)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


async def test_http2_prior_knowledge(stack, ready):
    async with httpx.AsyncClient(
        base_url=stack.url, http1=False, http2=True, headers={"Authorization": f"Bearer {stack.admin_key}"}
    ) as h2:
        r = await h2.get("/q?a=b", headers={"Host": host_for(ready, stack.url)})
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200 and r.json()["rawPath"] == "/q?a=b"
