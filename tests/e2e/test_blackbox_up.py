"""Black-box checks of `fnplane up` as an NVCF client sees it (reference/nvcf-api.md, invocation.md).

One platform, one deployed examples/inv_function.py; each assertion is an expectation a client written
against NVCF relies on, in the order `nvcf-cli` uses the API (create, deploy, poll until ACTIVE,
`deploy update` by deploymentId + gpuSpecificationId, host-routed invoke, undeploy, delete).
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path

import httpx
from up_process import UpProcess

FUNCTION = Path(__file__).resolve().parents[2] / "examples" / "inv_function.py"
SPEC = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 1, "maxInstances": 1}


def _wait_active(client: httpx.Client, fid: str, vid: str) -> None:
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = client.get(f"/v2/nvcf/functions/{fid}/versions/{vid}").json()["function"]["status"]
        if status in ("ACTIVE", "ERROR"):
            break
        time.sleep(0.2)
    assert status == "ACTIVE"


def test_nvcf_client_flow_through_fnplane_up(tmp_path: Path, start_up: type[UpProcess]) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    domain = up.url.split("://", 1)[1]
    # the OpenAPI document is public and covers the API and the path-routed invocation endpoints
    paths = httpx.get(f"{up.url}/v3/openapi").json()["paths"]
    for path in (
        "/v2/nvcf/functions",
        "/v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecificationId}",
        "/v2/nvcf/pexec/functions/{functionId}",
        "/v2/nvcf/pexec/status/{requestId}",
        "/v2/nvcf/exec/functions/{functionId}",
        "/v2/nvcf/queues/{requestId}/position",
        "/v2/nvcf/assets",
    ):
        assert path in paths, path
    with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        # malformed JSON: 400 naming the body, not a character offset
        r = client.post(
            "/v2/nvcf/functions", content=b'{"name": ', headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == "body" and r.json()["type"] == "urn:nv-boot:problem-details:bad-request"

        body = {
            "name": "blackbox",
            "inferenceUrl": "/echo",
            "inferencePort": 8000,
            "containerImage": "example/inv:1",
            "containerArgs": f"{sys.executable} {FUNCTION} $(PORT)",
            "description": "ignored on update",
        }
        r = client.post("/v2/nvcf/functions", json=body)
        assert r.status_code == 200, r.text  # the CLI fails on 201
        fn = r.json()["function"]
        fid, vid = fn["id"], fn["versionId"]
        assert fn["status"] == "INACTIVE" and fn["health"]["protocol"] == "HTTP"

        r = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}", json={"deploymentSpecifications": [SPEC]}
        )
        assert r.status_code == 200 and r.json()["deployment"]["functionStatus"] in ("DEPLOYING", "ACTIVE")
        _wait_active(client, fid, vid)

        # nvcf-cli `deploy update`: GET the deployment, pick the spec by gpu + instanceType, PATCH by ids
        dep = client.get(f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}").json()["deployment"]
        (spec,) = [
            s
            for s in dep["deploymentSpecifications"]
            if s["gpu"] == SPEC["gpu"] and s["instanceType"] == SPEC["instanceType"]
        ]
        r = client.patch(
            f"/v2/nvcf/deployments/{dep['deploymentId']}/gpu-specifications/{spec['gpuSpecificationId']}",
            json={"maxInstances": 2},
        )
        assert r.status_code == 200 and r.json()["gpuSpecification"]["maxInstances"] == 2

        # host names are case-insensitive: an upper-case Host (or function-id header) still routes
        for headers in (
            {"Host": f"{fid}.invocation.{domain}"},
            {"Host": f"{vid}.{fid}.invocation.{domain}"},
            {"Host": f"{fid.upper()}.INVOCATION.{domain}"},
            {"Host": f"{vid.upper()}.{fid.upper()}.Invocation.{domain}"},
            {"function-id": fid.upper(), "function-version-id": vid.upper()},
        ):
            r = client.post("/echo?x=1", headers={**headers, "NVCF-POLL-SECONDS": "20"}, json={"a": 1})
            assert r.status_code == 200, (headers, r.text)
            assert r.json() == {"a": 1} and r.headers["nvcf-status"] == "fulfilled"
            assert r.headers["nvcf-reqid"]

        # ids in paths parse in any case, as NVCF's UUID path variables do
        r = client.get(f"/v2/nvcf/functions/{fid.upper()}/versions/{vid.upper()}")
        assert r.status_code == 200 and r.json()["function"]["versionId"] == vid
        r = client.post(f"/v2/nvcf/pexec/functions/{fid.upper()}/versions/{vid.upper()}", json={"c": 3})
        assert r.status_code == 200 and r.json() == {"c": 3}
        r = client.get(f"/v2/nvcf/queues/functions/{fid.upper()}")
        assert r.status_code == 200 and r.json()["queues"][0]["functionVersionId"] == vid

        # exec envelope: a bad pollDurationSeconds names that field
        r = client.post(
            f"/v2/nvcf/exec/functions/{fid}",
            json={"requestHeader": {"pollDurationSeconds": 5000}, "requestBody": {}},
        )
        assert r.status_code == 400 and r.json()["field"] == "requestHeader.pollDurationSeconds"
        r = client.post(f"/v2/nvcf/exec/functions/{fid}", json={"requestBody": {"b": 2}})
        assert r.status_code == 200
        assert r.json()["status"] == "fulfilled" and r.json()["response"] == {"b": 2}

        r = client.delete(f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}")
        assert r.status_code == 200 and r.json()["function"]["status"] == "INACTIVE"
        r = client.delete(f"/v2/nvcf/functions/{fid}/versions/{vid}")
        assert r.status_code == 204 and r.content == b""
    assert up.stop() == 0


ABRUPT = Path(__file__).resolve().parent / "abrupt_function.py"


def test_undeploy_lets_requests_a_worker_holds_finish(tmp_path: Path, start_up: type[UpProcess]) -> None:
    """The worker stops before its function: what it already pulled is answered, not cut into a 500."""
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=up.url, headers=auth, timeout=30) as client:
        body = {
            "name": "abrupt",
            "inferenceUrl": "/slow",
            "inferencePort": 8000,
            "containerImage": "example/abrupt:1",
            "containerArgs": f"{sys.executable} {ABRUPT}",
        }
        fn = client.post("/v2/nvcf/functions", json=body).json()["function"]
        fid, vid = fn["id"], fn["versionId"]
        spec = {**SPEC, "maxRequestConcurrency": 2}
        r = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}", json={"deploymentSpecifications": [spec]}
        )
        assert r.status_code == 200, r.text
        _wait_active(client, fid, vid)
        assert client.post(f"/v2/nvcf/pexec/functions/{fid}", json={"seconds": 0}).status_code == 200

        results: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    f"{up.url}/v2/nvcf/pexec/functions/{fid}", headers=auth, json={"seconds": 2}, timeout=30
                )
            )
        )
        call.start()
        time.sleep(0.7)  # the worker holds it now
        r = client.delete(f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}")
        assert r.status_code == 200 and r.json()["function"]["status"] == "INACTIVE"
        call.join(30)
        assert results and results[0].status_code == 200, results[0].text if results else "no answer"
        assert results[0].json() == {"slept": 2.0}
    assert up.stop() == 0


def test_function_rate_limit_answers_429(tmp_path: Path, start_up: type[UpProcess]) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    up.wait_healthy()
    domain = up.url.split("://", 1)[1]
    with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        body = {
            "name": "limited",
            "inferenceUrl": "/slow",
            "inferencePort": 8000,
            "containerImage": "example/abrupt:1",
            "containerArgs": f"{sys.executable} {ABRUPT}",
            "rateLimit": {"rateLimit": "2-M"},
        }
        fn = client.post("/v2/nvcf/functions", json=body).json()["function"]
        fid, vid = fn["id"], fn["versionId"]
        r = client.post(
            f"/v2/nvcf/deployments/functions/{fid}/versions/{vid}", json={"deploymentSpecifications": [SPEC]}
        )
        assert r.status_code == 200, r.text
        _wait_active(client, fid, vid)
        assert client.post(f"/v2/nvcf/pexec/functions/{fid}", json={"seconds": 0}).status_code == 200
        host = {"Host": f"{fid}.invocation.{domain}"}
        assert client.post("/slow", headers=host, json={"seconds": 0}).status_code == 200
        # the third request in the minute: 429 problem+json, on every invocation path
        for r in (
            client.post(f"/v2/nvcf/pexec/functions/{fid}", json={"seconds": 0}),
            client.post("/slow", headers=host, json={"seconds": 0}),
            client.post(f"/v2/nvcf/exec/functions/{fid}", json={"requestBody": {"seconds": 0}}),
        ):
            assert r.status_code == 429, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["nvcf-status"] == "errored"
    assert up.stop() == 0
