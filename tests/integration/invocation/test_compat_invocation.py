"""NVCF compatibility details of the invocation plane (reference/invocation.md 7.4, nvcf-api.md 1.4, 1.5,
4.1-4.4), each against the real stack: headers on every invocation response (errors too), 404/400 rules of
version choice, the exec envelope, queue shapes and the 1000 cap, asset shapes and TTL, API-key resources.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from invocation_stack import host_for

from fnplane.control.db.repositories import functions as functions_repo
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects
from fnplane.shared.scopes import INVOKE_FUNCTION, QUEUE_DETAILS

UNKNOWN = "00000000-0000-4000-8000-000000000000"
EXPOSE = "access-control-expose-headers"


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(auth_cache_ttl_s=0.2, worker_silence_s=5.0, object_ttl_s=2.0)


@pytest.fixture
async def ready(stack):
    fn = await stack.deploy(name="compat", inference_url="/status", max_concurrency=4)
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=4)
    return fn


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (200, "fulfilled"),
        (201, "fulfilled"),
        (204, "fulfilled"),
        (301, "fulfilled"),
        (400, "errored"),
        (404, "errored"),
        (503, "errored"),
    ],
)
async def test_nvcf_status_and_expose_header_follow_the_status_code(stack, ready, code, expected):
    fn = ready
    pexec = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"code": code})
    direct = await stack.client.post(f"/status?code={code}", headers={"Host": host_for(fn, stack.url)})
    for r in (pexec, direct):
        assert r.status_code == code
        assert r.headers["nvcf-status"] == expected
        assert r.headers[EXPOSE].lower() == "nvcf-reqid" and r.headers["nvcf-reqid"]


async def test_202_is_in_progress(stack):
    fn = await stack.deploy(name="slow202", inference_url="/slow")
    port = await stack.function_process()
    await stack.worker(fn, port)
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 2}
    )
    assert r.status_code == 202 and r.headers["nvcf-status"] == "in-progress" and r.content == b""
    assert r.headers[EXPOSE].lower() == "nvcf-reqid"
    s = await stack.client.get(
        f"/v2/nvcf/pexec/status/{r.headers['nvcf-reqid']}", headers={"NVCF-POLL-SECONDS": "1"}
    )
    assert s.status_code in (200, 202) and s.headers[EXPOSE].lower() == "nvcf-reqid"


async def test_gateway_errors_on_invocation_routes_carry_nvcf_headers(stack, ready):
    fn = ready
    cases = [
        stack.client.post(f"/v2/nvcf/pexec/functions/{UNKNOWN}", json={}),
        stack.client.post("/x", headers={"Host": host_for({"id": UNKNOWN}, stack.url)}),
        stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "x"}),
        stack.client.get(f"/v2/nvcf/pexec/status/{uuid.uuid4()}"),
        stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json={"nope": 1}),
    ]
    statuses = []
    for call in cases:
        r = await call
        statuses.append(r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers[EXPOSE].lower() == "nvcf-reqid", r.headers
        assert r.headers["nvcf-status"] == "errored"
    assert statuses == [404, 404, 400, 404, 400]


@pytest.mark.parametrize(
    "gateway_settings", [GatewaySettings(auth_cache_ttl_s=60.0, worker_silence_s=5.0, object_ttl_s=2.0)]
)
async def test_a_version_is_invoked_as_soon_as_it_is_active(stack):
    # a client invoking while the version deploys, then again once GET says ACTIVE: neither the
    # gateway's grant cache nor the control plane's versions cache may still hold DEPLOYING
    fn = await stack.deploy(name="soon", inference_url="/echo")
    port = await stack.function_process()
    await stack.worker(fn, port)
    async with stack._engine.begin() as conn:
        await functions_repo.set_status(conn, fn["versionId"], "DEPLOYING", datetime.now(UTC))
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={})
    assert r.status_code == 404
    r = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}")
    assert r.json()["queues"][0]["functionStatus"] == "DEPLOYING"
    async with stack._engine.begin() as conn:
        await functions_repo.set_status(conn, fn["versionId"], "ACTIVE", datetime.now(UTC))
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={"at": "once"})
    assert r.status_code == 200 and r.json() == {"at": "once"}


async def test_unknown_function_404_and_degraded_only_400(stack):
    fn = await stack.deploy(name="deg")
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{UNKNOWN}", json={})
    assert r.status_code == 404
    engine = stack._engine
    async with engine.begin() as conn:
        await functions_repo.set_status(conn, fn["versionId"], "DEGRADED", datetime.now(UTC))
    await asyncio.sleep(0.3)  # the gateway's grant cache
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={})
    assert r.status_code == 400 and r.json()["status"] == 400
    r = await stack.client.post("/echo", headers={"Host": host_for(fn, stack.url)}, content=b"x")
    assert r.status_code == 400
    # a pinned version that is DEGRADED is also 400, an unknown pinned version 404
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}/versions/{fn['versionId']}", json={})
    assert r.status_code == 400
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}/versions/{UNKNOWN}", json={})
    assert r.status_code == 404


async def test_exec_envelope_shapes(stack):
    fn = await stack.deploy(name="exec", inference_url="/status", max_concurrency=2)
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=2)
    ok = await stack.client.post(
        f"/v2/nvcf/exec/functions/{fn['id']}", json={"requestHeader": {}, "requestBody": {"code": 200}}
    )
    assert ok.status_code == 200
    doc = ok.json()
    assert set(doc) == {"reqId", "status", "percentComplete", "response"}
    assert doc["status"] == "fulfilled" and doc["percentComplete"] == 100
    assert doc["reqId"] == ok.headers["nvcf-reqid"]
    bad = await stack.client.post(f"/v2/nvcf/exec/functions/{fn['id']}", json={"requestBody": {"code": 422}})
    assert bad.status_code == 422
    doc = bad.json()
    assert doc["status"] == "errored" and doc["errorCode"] == 422
    assert doc["response"]["type"] == "urn:inference-service:problem-details:unprocessable-entity"
    large = await stack.deploy(name="execlarge", inference_url="/large")
    port = await stack.function_process()
    await stack.worker(large, port)
    r = await stack.client.post(
        f"/v2/nvcf/exec/functions/{large['id']}", json={"requestBody": {"bytes": 6 * 1024 * 1024}}
    )
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "fulfilled" and doc["percentComplete"] == 100
    assert "/v2/nvcf/pexec/results/" in doc["responseReference"]


async def test_exec_refuses_numbers_that_are_not_json_and_answers_only_json(stack):
    fn = await stack.deploy(name="execnan", inference_url="/echo")
    port = await stack.function_process()
    await stack.worker(fn, port)
    path = f"/v2/nvcf/exec/functions/{fn['id']}"
    json_type = {"Content-Type": "application/json"}
    # was 200: the function got NaN, and the client `"response": NaN`, which is not JSON
    r = await stack.client.post(path, content=b'{"requestBody": {"x": [1, NaN]}}', headers=json_type)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "requestBody.x.1"
    r = await stack.client.post(path, content=b'{"requestBody": 1e400}', headers=json_type)
    assert r.status_code == 400 and r.json()["field"] == "requestBody"
    ok = await stack.client.post(path, content=b'{"requestBody": {"x": [1, 2.5]}}', headers=json_type)
    assert ok.status_code == 200 and ok.json()["response"] == {"x": [1, 2.5]}


async def test_queue_shapes_and_position_capped_at_1000(stack):
    fn = await stack.deploy(name="q")  # no worker: everything stays queued
    queue_url = f"/v2/nvcf/queues/functions/{fn['id']}"
    empty = await stack.client.get(queue_url)
    assert empty.status_code == 200
    assert empty.json() == {
        "functionId": fn["id"],
        "queues": [
            {
                "functionVersionId": fn["versionId"],
                "functionName": fn["name"],
                "functionStatus": "ACTIVE",
                "queueDepth": 0,
            }
        ],
    }
    # 1,005 requests ahead of ours (published straight to the version's queue)
    await stack.gateway.bus.ensure_stream(fn["versionId"])
    nc = await stack.bus.gateway_client()
    try:
        js = nc.jetstream()
        for _ in range(1005):
            rid = str(uuid.uuid4())
            await js.publish(
                subjects.request_subject(fn["versionId"], rid), b"{}", headers={"Nats-Msg-Id": rid}
            )
    finally:
        await nc.close()
    call = asyncio.create_task(
        stack.client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "10"}, json={}
        )
    )
    rid = None
    for _ in range(100):
        await asyncio.sleep(0.05)
        held = list(stack.gateway.bus._exchanges)
        if held:
            rid = held[0]
            break
    assert rid is not None
    for _ in range(50):
        pos = await stack.client.get(f"/v2/nvcf/queues/{rid}/position")
        if pos.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert pos.status_code == 200, pos.text
    assert pos.json() == {
        "functionId": fn["id"],
        "functionVersionId": fn["versionId"],
        "positionInQueue": 1000,
    }
    depth = await stack.client.get(f"{queue_url}/versions/{fn['versionId']}")
    assert depth.json()["queues"][0]["queueDepth"] == 1006
    call.cancel()
    assert (await stack.client.get(f"/v2/nvcf/queues/{uuid.uuid4()}/position")).status_code == 404


async def test_asset_shapes_and_content_deleted_after_its_ttl(stack):
    created = await stack.client.post(
        "/v2/nvcf/assets", json={"contentType": "text/plain", "description": "notes"}
    )
    assert created.status_code == 200
    asset = created.json()
    assert set(asset) == {"assetId", "uploadUrl", "contentType", "description"}
    assert asset["contentType"] == "text/plain" and asset["description"] == "notes"
    async with httpx.AsyncClient() as plain:
        put = await plain.put(asset["uploadUrl"], content=b"hello", headers={"Content-Type": "text/plain"})
        assert put.status_code == 200
    listed = (await stack.client.get("/v2/nvcf/assets")).json()
    assert listed == {"assets": [{"assetId": asset["assetId"]}]}
    got = (await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}")).json()
    assert set(got) == {"asset"} and set(got["asset"]) == {
        "assetId",
        "description",
        "contentType",
        "createdAt",
    }
    created_at = datetime.fromisoformat(got["asset"]["createdAt"].replace("Z", "+00:00"))
    assert abs(created_at - datetime.now(UTC)) < timedelta(minutes=1)
    redirect = (await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}/content-redirect")).json()
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(redirect["presignedUrl"])).content == b"hello"
    # the 2 s TTL of this gateway's buckets: record and content are gone
    await asyncio.sleep(3.0)
    assert (await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}")).status_code == 404
    assert (await stack.client.get("/v2/nvcf/assets")).json() == {"assets": []}
    nc = await stack.bus.gateway_client()
    try:
        info = await nc.jetstream().stream_info(f"OBJ_{subjects.OBJECT_BUCKET}")
    finally:
        await nc.close()
    assert info.state.messages == 0  # chunks and metadata of the content expired too
    second = (
        await stack.client.post("/v2/nvcf/assets", json={"contentType": "text/plain", "description": "d"})
    ).json()
    assert (await stack.client.delete(f"/v2/nvcf/assets/{second['assetId']}")).status_code == 204
    assert (await stack.client.delete(f"/v2/nvcf/assets/{second['assetId']}")).status_code == 404


async def test_api_key_resources_limit_invocation_like_the_control_plane(stack, ready):
    fn = ready
    other = await stack.deploy(name="other")
    body = {
        "description": "narrow",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "authorizations": {
            "policies": [
                {
                    "aud": "nvidia-cloud-functions-ncp-service-id-aketm",
                    "product": "nv-cloud-functions",
                    "resources": [{"type": "function", "id": f"{other['id']}/*"}],
                    "scopes": [INVOKE_FUNCTION, QUEUE_DETAILS],
                }
            ]
        },
    }
    key = await stack.control.post("/v1/keys", json=body)
    assert key.status_code in (200, 201), key.text
    narrow = {"Authorization": f"Bearer {key.json()['value']}"}
    control = await stack.control.post(
        "/v1/fnplane/access", json={"scope": INVOKE_FUNCTION, "functionId": fn["id"]}, headers=narrow
    )
    pexec = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", json={"code": 200}, headers=narrow
    )
    direct = await stack.client.post("/status?code=200", headers={**narrow, "Host": host_for(fn, stack.url)})
    queue = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}", headers=narrow)
    assert control.status_code in (403, 404)
    assert pexec.status_code == direct.status_code == queue.status_code == control.status_code
    assert json.loads(pexec.content)["status"] == control.status_code
