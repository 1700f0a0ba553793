"""Queues (depth, position, 429 when full) and assets (upload URL, worker download, 404s)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx
import nats
import pytest

from fnplane.bus.buckets import CHUNK_BYTES
from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects
from polling import wait_for


async def queued_request_ids(stack, version_id: str) -> list[str]:
    nc = await stack.bus.gateway_client()
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.request_stream(version_id))
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(subjects.request_stream(version_id), seq)
            except nats.js.errors.NotFoundError:
                continue
            ids.append(subjects.last_token(msg.subject))
        return ids
    finally:
        await nc.close()


async def test_queue_depth_and_position_under_a_saturated_version(stack):
    fn = await stack.deploy(name="q", inference_url="/slow", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=1)
    calls = [
        asyncio.create_task(
            stack.client.post(
                f"/v2/nvcf/pexec/functions/{fn['id']}",
                headers={"NVCF-POLL-SECONDS": "20"},
                json={"seconds": 1.5},
            )
        )
        for _ in range(4)
    ]
    depth = {}
    for _ in range(60):
        r = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}")
        assert r.status_code == 200, r.text
        depth = r.json()
        if depth["queues"][0]["queueDepth"] == 3:
            break
        await asyncio.sleep(0.05)
    assert depth["functionId"] == fn["id"]
    assert depth["queues"][0] == {
        "functionVersionId": fn["versionId"],
        "functionName": fn["name"],
        "functionStatus": "ACTIVE",
        "queueDepth": 3,
    }
    by_version = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}/versions/{fn['versionId']}")
    assert by_version.json()["queues"][0]["queueDepth"] == 3
    ids = await queued_request_ids(stack, fn["versionId"])
    assert len(ids) == 4  # one running (unacked) + three waiting
    positions = []
    for rid in ids:
        r = await stack.client.get(f"/v2/nvcf/queues/{rid}/position")
        assert r.status_code == 200, r.text
        assert r.json()["functionId"] == fn["id"] and r.json()["functionVersionId"] == fn["versionId"]
        positions.append(r.json()["positionInQueue"])
    assert positions == [0, 1, 2, 3]
    results = await asyncio.gather(*calls)
    assert [r.status_code for r in results] == [200] * 4
    r = await stack.client.get(f"/v2/nvcf/queues/{ids[0]}/position")
    assert r.status_code == 404


async def test_a_position_does_not_count_a_request_that_left_the_queue_before_it(stack):
    fn = await stack.deploy(name="q", inference_url="/slow", max_concurrency=1)
    port = await stack.function_process()
    await stack.worker(fn, port, max_concurrency=1)
    url = f"/v2/nvcf/pexec/functions/{fn['id']}"
    busy = asyncio.create_task(
        stack.client.post(url, headers={"NVCF-POLL-SECONDS": "20"}, json={"seconds": 4})
    )

    async def running() -> bool:
        try:
            ids = await queued_request_ids(stack, fn["versionId"])
        except nats.js.errors.BadRequestError:  # nothing queued yet: the stream has no sequence 0
            return False
        if len(ids) != 1:
            return False
        r = await stack.client.get(f"/v2/nvcf/queues/{ids[0]}/position")
        return r.status_code == 200 and r.json()["positionInQueue"] == 0

    await wait_for(running, 10)
    # waits behind the busy one, its window ends first: 504, and its message is purged
    timed_out = await stack.client.post(url, headers={"NVCF-POLL-SECONDS": "1"}, json={"seconds": 0})
    assert timed_out.status_code == 504
    later = await stack.client.post(url, headers={"Prefer": "respond-async"}, json={"seconds": 0})
    assert later.status_code == 202
    r = await stack.client.get(f"/v2/nvcf/queues/{later.headers['nvcf-reqid']}/position")
    assert r.status_code == 200, r.text
    assert r.json()["positionInQueue"] == 1  # next in line: the purged request is not ahead of it
    assert (await busy).status_code == 200


@pytest.mark.parametrize("gateway_settings", [GatewaySettings(max_queued_requests=1)])
async def test_a_full_queue_answers_429(stack):
    fn = await stack.deploy()
    first = asyncio.create_task(
        stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "2"}, json={})
    )
    await asyncio.sleep(0.5)
    r = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={})
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert (await first).status_code == 504


async def test_the_queue_of_a_public_function_is_400(stack):
    fn = await stack.deploy(name="pub")
    r = await stack.control.post(
        f"/v2/nvcf/authorizations/functions/{fn['id']}", json={"authorizedParties": [{"ncaId": "*"}]}
    )
    assert r.status_code == 200, r.text
    for path in (
        f"/v2/nvcf/queues/functions/{fn['id']}",
        f"/v2/nvcf/queues/functions/{fn['id']}/versions/{fn['versionId']}",
    ):
        r = await stack.client.get(path)
        assert r.status_code == 400, r.text
        assert r.json()["field"] == "functionId"
    # private again: its queue shows (once the caches hear of the change)
    await stack.control.delete(f"/v2/nvcf/authorizations/functions/{fn['id']}")

    async def shown() -> bool:
        r = await stack.client.get(f"/v2/nvcf/queues/functions/{fn['id']}")
        return r.status_code == 200

    await wait_for(shown, 5)


async def test_queue_of_an_undeployed_function_is_404(stack):
    r = await stack.client.get("/v2/nvcf/queues/functions/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404


async def test_assets_upload_download_by_the_worker_and_delete(stack):
    fn = await stack.deploy(name="a", inference_url="/assets")
    port = await stack.function_process()
    await stack.worker(fn, port)
    created = await stack.client.post(
        "/v2/nvcf/assets", json={"contentType": "application/octet-stream", "description": "weights"}
    )
    assert created.status_code == 200, created.text
    asset = created.json()
    assert asset["uploadUrl"].startswith(stack.url)
    content = os.urandom(700_000)
    async with httpx.AsyncClient() as plain:  # the signed URL is the credential
        put = await plain.put(
            asset["uploadUrl"],
            content=content,
            headers={
                "Content-Type": "application/octet-stream",
                "x-amz-meta-nvcf-asset-description": "weights",
            },
        )
        assert put.status_code == 200
        forged = await plain.put(asset["uploadUrl"].replace("signature=", "signature=f"), content=b"x")
        assert forged.status_code == 403
    listed = await stack.client.get("/v2/nvcf/assets")
    assert {"assetId": asset["assetId"]} in listed.json()["assets"]
    got = await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}")
    assert got.json()["asset"]["description"] == "weights"
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}",
        headers={"NVCF-INPUT-ASSET-REFERENCES": asset["assetId"]},
        json={},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "assets": {asset["assetId"]: hashlib.sha256(content).hexdigest()},
        "ids": asset["assetId"],
    }
    missing = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}",
        headers={"NVCF-INPUT-ASSET-REFERENCES": "00000000-0000-4000-8000-000000000000"},
        json={},
    )
    assert missing.status_code == 404
    malformed = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-INPUT-ASSET-REFERENCES": "not-a-uuid"}, json={}
    )
    assert malformed.status_code == 400
    assert (await stack.client.delete(f"/v2/nvcf/assets/{asset['assetId']}")).status_code == 204
    assert (await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}")).status_code == 404
    bad = await stack.client.post("/v2/nvcf/assets", json={"contentType": "x/y"})
    assert bad.status_code == 400 and bad.json()["field"] == "description"


async def test_a_wrong_method_on_a_gateway_path_is_405_with_allow(stack):
    # it was a 404 "no route", as for a path that does not exist (found by tests/e2e/test_api_fuzz.py)
    r = await stack.client.request("PUT", "/v2/nvcf/assets")
    assert r.status_code == 405, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["allow"] == "GET, HEAD, POST"
    assert r.json()["status"] == 405
    position = f"/v2/nvcf/queues/{'0' * 8}-0000-0000-0000-{'0' * 12}/position"
    r = await stack.client.request("TRACE", position)
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
    assert (await stack.client.get("/v2/nvcf/no-such-thing")).status_code == 404
    # HEAD answers as its GET, without the body (RFC 9110 9.3.2)
    got, head = await stack.client.get(position), await stack.client.head(position)
    assert head.status_code == got.status_code == 404 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"] == "application/problem+json"


async def test_a_queue_deleted_behind_the_gateways_back_is_made_again(stack):
    fn = await stack.deploy(name="gone")
    bus = stack.gateway.bus
    await bus.ensure_stream(fn["versionId"])  # the gateway knows the queue and will not look again
    await bus.js.delete_stream(subjects.request_stream(fn["versionId"]))
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "1"}, json={}
    )
    # queued, and with no worker to take it answered as NVCF does after poll + 2 s (504, empty body);
    # a publish that was not stored would have been a 503 problem at once
    assert r.status_code == 504 and r.content == b"", r.text
    await bus.js.stream_info(subjects.request_stream(fn["versionId"]))  # made again


async def test_an_asset_named_twice_or_in_capitals_is_one_input(stack):
    fn = await stack.deploy(name="a", inference_url="/assets")
    port = await stack.function_process()
    await stack.worker(fn, port)
    created = await stack.client.post(
        "/v2/nvcf/assets", json={"contentType": "text/plain", "description": "d"}
    )
    asset = created.json()
    async with httpx.AsyncClient() as plain:
        assert (await plain.put(asset["uploadUrl"], content=b"twice")).status_code == 200
    aid = asset["assetId"]
    r = await stack.client.post(
        f"/v2/nvcf/pexec/functions/{fn['id']}",
        headers={"NVCF-INPUT-ASSET-REFERENCES": f"{aid}, {aid.upper()},{aid}"},
        json={},
    )
    # was: 500 errorCode 910 ("File exists") for the repeat, 404 for the capitals
    assert r.status_code == 200, r.text
    assert r.json() == {"assets": {aid: hashlib.sha256(b"twice").hexdigest()}, "ids": aid}


async def test_headers_too_large_to_queue_are_400_not_503(stack):
    fn = await stack.deploy(name="h", inference_url="/echo")
    port = await stack.function_process()
    await stack.worker(fn, port)
    big = {f"x-big-{i}": "a" * 1000 for i in range(64)}  # the HTTP server takes them; JetStream would not
    for answer in (
        await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=big, json={}),
        await stack.client.post("/echo", headers={**big, "function-id": fn["id"]}, json={}),
    ):
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["field"] == "headers"
    fine = {f"x-big-{i}": "a" * 1000 for i in range(32)}
    ok = await stack.client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=fine, json={"a": 1})
    assert ok.status_code == 200 and ok.json() == {"a": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # a CR/LF or NUL in contentType made the asset's download (and any invocation with it) a 500
        (b'{"contentType": "text/plain\\r\\nX-Evil: 1", "description": "d"}', "contentType"),
        (b'{"contentType": "a\\u0000b", "description": "d"}', "contentType"),
        (b'{"contentType": "' + b"a" * 256 + b'", "description": "d"}', "contentType"),
        # a lone surrogate could not be stored: 500
        (b'{"contentType": "text/plain", "description": "\\ud800"}', "description"),
        (b'{"contentType": "text/plain", "description": "a\\nb"}', "description"),
    ],
)
async def test_asset_fields_that_cannot_be_served_are_400(stack, body, field):
    r = await stack.client.post("/v2/nvcf/assets", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field
    assert (await stack.client.get("/v2/nvcf/assets")).json() == {"assets": []}


async def test_exec_names_the_bad_input_asset_reference_by_its_body_path(stack):
    fn = await stack.deploy(name="x", inference_url="/echo")
    refs = ["00000000-0000-4000-8000-000000000000", 5]
    r = await stack.client.post(
        f"/v2/nvcf/exec/functions/{fn['id']}",
        json={"requestHeader": {"inputAssetReferences": refs}, "requestBody": {}},
    )
    assert r.status_code == 400, r.text
    # was NVCF-INPUT-ASSET-REFERENCES, a header the client never sent
    assert r.json()["field"] == "requestHeader.inputAssetReferences.1"


async def test_an_asset_deleted_during_its_upload_stays_deleted(stack):
    created = await stack.client.post(
        "/v2/nvcf/assets", json={"contentType": "application/octet-stream", "description": "d"}
    )
    asset = created.json()
    nc = await stack.bus.gateway_client()
    js = nc.jetstream()
    stream = f"OBJ_{subjects.OBJECT_BUCKET}"
    before = (await js.stream_info(stream)).state.messages
    go_on = asyncio.Event()

    async def body():
        yield os.urandom(CHUNK_BYTES + 1)  # one chunk stored: the upload is under way
        await go_on.wait()
        yield os.urandom(1000)

    try:
        async with httpx.AsyncClient(timeout=30) as plain:
            upload = asyncio.create_task(plain.put(asset["uploadUrl"], content=body()))

            async def chunk_stored() -> bool:
                return (await js.stream_info(stream)).state.messages > before

            await wait_for(chunk_stored, 10)
            deleted = await stack.client.delete(f"/v2/nvcf/assets/{asset['assetId']}")
            assert deleted.status_code == 204
            go_on.set()
            answer = await upload
        # was 200, and the deleted asset was back (listed, readable, counted against the quota)
        assert answer.status_code == 404, answer.text
        assert (await stack.client.get(f"/v2/nvcf/assets/{asset['assetId']}")).status_code == 404
        assert (await stack.client.get("/v2/nvcf/assets")).json() == {"assets": []}
        # its bytes are gone too: only the delete marker's metadata is left
        assert (await js.stream_info(stream)).state.bytes < 1000
    finally:
        await nc.close()


async def test_asset_creation_takes_json_only_as_the_nvcf_api_does(stack):
    body = b'{"contentType": "text/plain", "description": "d"}'
    # was 200: the control API's endpoints answer another media type 415, the asset endpoint did not
    r = await stack.client.post("/v2/nvcf/assets", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == 415
    assert (await stack.client.get("/v2/nvcf/assets")).json() == {"assets": []}
    for media_type in ("application/json; charset=utf-8", "application/merge-patch+json", None):
        headers = {"Content-Type": media_type} if media_type else {}
        ok = await stack.client.post("/v2/nvcf/assets", content=body, headers=headers)
        assert ok.status_code == 200, (media_type, ok.text)
