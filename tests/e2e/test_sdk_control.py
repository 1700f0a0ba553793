"""The SDK's control-plane methods against a real `fnplane up`: functions, versions, deployments
(wait_until_active with its live status, DeploymentFailedError), secrets, keys, service accounts,
queues, instance logs (also followed), assets streamed both ways, and the gRPC helpers."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sdk_platform import REPO, Platform, platform  # noqa: F401
from up_process import grpc_function_body

from fnplane.sdk import (
    AsyncClient,
    Client,
    DeploymentFailedError,
    ForbiddenError,
    GatewayTimeoutError,
    NotFoundError,
    UnauthorizedError,
)

INV = f"{sys.executable} {REPO / 'examples' / 'inv_function.py'} $(PORT)"
ECHO = f"{sys.executable} {REPO / 'examples' / 'echo_server.py'}"  # logs a line per request
GPU = {"gpu": "L40S", "instance_type": "LOCAL.GPU.L40S_1x"}


async def test_functions_versions_deployments_and_logs(platform: Platform) -> None:  # noqa: F811
    async with AsyncClient(platform.up.url, platform.key) as client:
        assert (await client.health())["status"] == "ok"
        assert "L40S" in [g["gpu"] for g in await client.supported_gpus()]
        assert await client.cluster_groups()

        function = await client.create_function(
            name="sdk-control",
            inference_url="/echo",
            inference_port=8000,
            container_args=ECHO,
            container_environment={"GREETING": "hi"},
            health_uri="/v2/health/ready",
            description="from the sdk",
            tags=["sdk"],
        )
        fid, vid = function["id"], function["versionId"]
        assert function["status"] == "INACTIVE" and function["description"] == "from the sdk"
        second = await client.create_version(
            fid, name="sdk-control", inference_url="/echo", inference_port=8000, container_args=INV
        )
        assert second["id"] == fid and second["versionId"] != vid
        assert fid in await client.list_function_ids()
        assert fid in [f["id"] for f in await client.list_functions(visibility="private")]
        assert {v["versionId"] for v in await client.list_versions(fid)} == {vid, second["versionId"]}
        await client.delete_version(fid, second["versionId"])
        with pytest.raises(NotFoundError):
            await client.get_version(fid, second["versionId"])

        await client.update_secrets(fid, vid, {"TOKEN": "s3cret"})
        assert (await client.get_version(fid, vid))["secrets"] == ["TOKEN"]  # names only

        deployment = await client.deploy(fid, vid, max_request_concurrency=2, **GPU)
        assert deployment["functionId"] == fid
        seen: list[str] = []
        version = await client.wait_until_active(fid, vid, 60, on_status=lambda v: seen.append(v["status"]))
        assert version["status"] == "ACTIVE" and seen[-1] == "ACTIVE" and len(seen) == len(set(seen))
        spec = (await client.get_deployment(fid, vid))["deploymentSpecifications"][0]
        assert spec["maxRequestConcurrency"] == 2
        updated = await client.update_deployment(fid, vid, max_instances=2, **GPU)
        assert updated["deploymentSpecifications"][0]["maxInstances"] == 2
        assert updated["deploymentSpecifications"][0]["minInstances"] == 1  # kept
        await client.wait_for_status(fid, vid, "ACTIVE", timeout_s=30)

        assert await client.invoke(fid, {"hello": "logs"}) == {"echo": {"hello": "logs"}, "path": "/echo"}
        queue = await client.queue(fid, vid)
        assert queue["functionId"] == fid and isinstance(queue["queues"], list)
        assert (await client.queue(fid))["functionId"] == fid

        [instance] = (await client.get_version(fid, vid))["activeInstances"]
        iid = instance["instanceId"]
        before, after = f"/before-{uuid.uuid4()}", f"/after-{uuid.uuid4()}"
        await client.invoke_direct(fid, before, json={})
        await wait_for_line(client, fid, vid, iid, before)
        lines = client.follow_logs(fid, vid, iid, tail=100)
        assert await asyncio.wait_for(read_until(lines, before), 30)
        await client.invoke_direct(fid, after, json={})  # written while the logs are followed
        assert await asyncio.wait_for(read_until(lines, after), 30)
        await lines.aclose()

        assert (await client.undeploy(fid, vid))["status"] == "INACTIVE"


async def wait_for_line(client: AsyncClient, fid: str, vid: str, iid: str, text: str) -> None:
    for _ in range(100):
        if text in await client.instance_logs(fid, vid, iid, tail=20):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text} not in the logs")


async def read_until(lines: AsyncIterator[str], text: str) -> str:
    async for line in lines:
        if text in line:
            return line
    raise AssertionError(f"the logs ended without {text}")


async def test_a_callers_own_http_client(platform: Platform) -> None:  # noqa: F811
    async with httpx.AsyncClient(headers={"User-Agent": "mine"}) as http:
        async with AsyncClient(platform.up.url, platform.key, http_client=http) as client:
            assert (await client.health())["status"] == "ok"
            assert await client.list_function_ids() is not None
        assert not http.is_closed  # the caller's to close


def test_wait_until_active_raises_deployment_failed(platform: Platform) -> None:  # noqa: F811
    crash = f"{sys.executable} {REPO / 'examples' / 'crash_server.py'}"
    with Client(platform.up.url, platform.key) as client:
        function = client.create_function(
            name="sdk-crash", inference_url="/x", inference_port=8000, container_args=crash
        )
        fid, vid = function["id"], function["versionId"]
        client.deploy(fid, vid, **GPU)
        with pytest.raises(DeploymentFailedError) as failed:
            client.wait_until_active(fid, vid, 90)
        assert failed.value.version["status"] == "ERROR"
        # the reason is the deployment's health error (the crash's log tail), not the health settings
        assert failed.value.reasons and all(reason in str(failed.value) for reason in failed.value.reasons)
        assert "expectedStatusCode" not in str(failed.value)
        with pytest.raises(GatewayTimeoutError):
            client.wait_for_status(fid, vid, "ACTIVE", timeout_s=1)
        client.undeploy(fid, vid)


def test_keys_service_accounts_and_tokens(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/echo")["id"]
    with Client(platform.up.url, platform.key) as admin:
        key = admin.create_key(scopes=["invoke_function"], expires_in="12h", description="sdk test")
        assert key["value"].startswith("nvapi-")
        assert key["id"] in [k["id"] for k in admin.list_keys()]
        assert admin.get_key(key["id"])["id"] == key["id"]
        with Client(platform.up.url, key["value"]) as invoker:
            assert invoker.invoke(fid, {"k": 1}) == {"k": 1}
            with pytest.raises(ForbiddenError):
                invoker.list_functions()
            admin.revoke_key(key["id"])
            with pytest.raises(UnauthorizedError):
                invoker.invoke(fid, {"k": 2})

        account = admin.create_service_account("sdk-ci", ["invoke_function", "list_functions"])
        cid = account["clientId"]
        assert account["clientSecret"]
        assert cid in [a["clientId"] for a in admin.list_service_accounts()]
        assert admin.get_service_account(cid)["name"] == "sdk-ci"
        token = admin.token(cid, account["clientSecret"], ["invoke_function"])
        assert token["scope"] == "invoke_function"
        with Client(platform.up.url, client_id=cid, client_secret=account["clientSecret"]) as ci:
            assert ci.invoke(fid, {"sa": 1}) == {"sa": 1}
            assert fid in ci.list_function_ids()
        rotated = admin.rotate_service_account_secret(cid)
        assert rotated["clientSecret"] != account["clientSecret"]
        with Client(platform.up.url, token["access_token"]) as stale, pytest.raises(UnauthorizedError):
            stale.invoke(fid, {})
        admin.delete_service_account(cid)
        with pytest.raises(NotFoundError):
            admin.get_service_account(cid)


async def test_assets_stream_both_ways_and_reach_the_function(platform: Platform, tmp_path: Path) -> None:  # noqa: F811
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(7 * 1024 * 1024 + 123))
    sent: list[int] = []
    received: list[int] = []
    async with AsyncClient(platform.up.url, platform.key) as client:
        asset_id = await client.upload_asset(source, description="sdk-asset", progress=sent.append)
        assert sent[-1] == source.stat().st_size and len(sent) > 1 and sent == sorted(sent)
        assert (await client.get_asset(asset_id))["description"] == "sdk-asset"
        assert asset_id in [a["assetId"] for a in await client.list_assets()]
        written = await client.download_asset(asset_id, tmp_path / "out.bin", progress=received.append)
        assert written == source.stat().st_size == received[-1]
        assert (tmp_path / "out.bin").read_bytes() == source.read_bytes()

        small = await client.upload_asset(b"hello asset", content_type="text/plain")
        # a description that is no header value (was UnicodeEncodeError, leaving an empty asset)
        named = await client.upload_asset(b"caf\xc3\xa9", content_type="text/plain", description="café ☃")
        assert (await client.get_asset(named))["description"] == "café ☃"
        await client.delete_asset(named)
        fid = platform.function("/assets")["id"]
        seen = await client.invoke(fid, {}, input_assets=[asset_id, small])
        assert set(seen["assets"]) == {asset_id, small}

        await client.delete_asset(small)
        with pytest.raises(NotFoundError):
            await client.get_asset(small)


@pytest.fixture(scope="module")
def grpc_function(platform: Platform) -> dict:  # noqa: F811
    body = grpc_function_body("sdk-grpc", REPO / "tests" / "e2e" / "grpc_function.py")
    with Client(platform.up.url, platform.key) as client:
        function = client.create_function(**body)
        client.deploy(function["id"], function["versionId"], **GPU)
        client.wait_until_active(function["id"], function["versionId"], 60)
    return function


async def test_grpc_metadata_and_aio_channel(platform: Platform, grpc_function: dict) -> None:  # noqa: F811
    fid, vid = grpc_function["id"], grpc_function["versionId"]
    async with AsyncClient(platform.up.url, platform.key, grpc_target=platform.up.grpc_target) as client:
        metadata = await client.grpc_metadata(fid, vid)
        assert metadata == [
            ("authorization", f"Bearer {platform.key}"),
            ("function-id", fid),
            ("function-version-id", vid),
        ]
        async with await client.grpc_channel() as channel:
            echo = channel.unary_unary("/fnplane.test.Fn/Echo")
            assert await echo(b"hi", metadata=metadata, timeout=30) == b"hi"


def test_grpc_blocking_channel(platform: Platform, grpc_function: dict) -> None:  # noqa: F811
    fid = grpc_function["id"]
    os.environ["FNPLANE_GRPC"] = platform.up.grpc_target  # the default target, from the environment
    try:
        with Client(platform.up.url, platform.key) as client, client.grpc_channel() as channel:
            echo = channel.unary_unary("/fnplane.test.Fn/Echo")
            assert echo(b"sync", metadata=client.grpc_metadata(fid), timeout=30) == b"sync"
    finally:
        del os.environ["FNPLANE_GRPC"]
