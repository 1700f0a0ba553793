"""Invocation through the real platform: `fnplane up` deploys examples/inv_function.py through its agent,
and the gateway on the one HTTP port serves direct, pexec, 202/status, SSE and h2c invocations."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

import httpx
from up_process import UpProcess, deploy_inv_function

from fnplane.sdk.h2fair import FairAsyncHTTPTransport


def deploy(up: UpProcess, headers: dict[str, str], inference_url: str) -> dict:
    return deploy_inv_function(up, headers, name="inv-e2e", inference_url=inference_url, max_concurrency=4)


def test_invocation_through_fnplane_up(tmp_path: Path, start_up: type[UpProcess]) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    auth = {"Authorization": f"Bearer {key}"}
    fn = deploy(up, auth, "/slow")
    domain = up.url.split("://", 1)[1]
    host = {"Host": f"{fn['id']}.invocation.{domain}"}
    with httpx.Client(base_url=up.url, headers=auth, timeout=30) as client:
        # the worker may take a moment after ACTIVE to pull: poll long enough
        r = client.post(
            "/inspect?name=John", headers={**host, "NVCF-POLL-SECONDS": "20"}, json={"name": "John"}
        )
        assert r.status_code == 200, r.text
        seen = r.json()
        assert seen["rawPath"] == "/inspect?name=John"
        assert "Authorization" not in seen["headers"] and seen["headers"]["NVCF-FUNCTION-ID"] == fn["id"]
        assert r.headers["nvcf-status"] == "fulfilled" and r.headers["nvcf-reqid"]

        r = client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 2}
        )
        assert r.status_code == 202
        rid = r.headers["nvcf-reqid"]
        for _ in range(10):
            s = client.get(f"/v2/nvcf/pexec/status/{rid}", headers={"NVCF-POLL-SECONDS": "5"})
            if s.status_code != 202:
                break
        assert s.status_code == 200 and s.json()["slept"] == 2

        events = []
        with client.stream(
            "POST",
            "/sse",
            headers={**host, "Accept": "text/event-stream"},
            json={"events": 3, "interval": 0.2},
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert len(events) == 3

    with httpx.Client(base_url=up.url, headers=auth, http1=False, http2=True, timeout=30) as h2:
        r = h2.get("/q?a=1", headers=host)
        assert r.http_version == "HTTP/2" and r.status_code == 200 and r.json()["rawPath"] == "/q?a=1"
    assert up.stop() == 0


def test_concurrent_http2_uploads_to_a_busy_version_all_arrive(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    # one HTTP/2 connection, three 3 MiB bodies, a version that runs one request at a time: the bodies
    # of the queued streams must not hold the connection's flow-control window, else the stream being
    # served got no more data and failed 500 "request body unavailable" after the worker's pull timeout
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    auth = {"Authorization": f"Bearer {key}"}
    fn = deploy_inv_function(up, auth, name="inv-h2-upload", inference_url="/inspect", max_concurrency=1)
    host = {"Host": f"{fn['id']}.invocation.{up.url.split('://', 1)[1]}", "NVCF-POLL-SECONDS": "30"}
    bodies = [secrets.token_bytes(3 * 1024 * 1024) for _ in range(3)]

    async def upload_all() -> list[httpx.Response]:
        # httpcore's own HTTP/2 client can stall a body waiting for flow-control credit behind another
        # stream's read (the SDK's h2fair.py); the SDK's transport waits fairly
        transport = FairAsyncHTTPTransport(http1=False, http2=True, limits=httpx.Limits(max_connections=1))
        async with httpx.AsyncClient(base_url=up.url, headers=auth, timeout=60, transport=transport) as h2:
            return await asyncio.gather(
                *(h2.post(f"/up?n={i}", headers=host, content=b) for i, b in enumerate(bodies))
            )

    for i, r in enumerate(asyncio.run(upload_all())):
        assert r.http_version == "HTTP/2" and r.status_code == 200, r.text
        seen = r.json()
        assert seen["rawPath"] == f"/up?n={i}"
        assert seen["bodySha256"] == hashlib.sha256(bodies[i]).hexdigest()
    assert up.stop() == 0
