"""The SDK against a real `fnplane up`: the README tour in Python, and errors mapped to the error tree."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from up_process import UpProcess

from fnplane.sdk import AsyncClient, Client
from fnplane.shared.errors import ForbiddenError, NotFoundError, UnauthorizedError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def platform(tmp_path: Path, start_up: type[UpProcess]) -> tuple[UpProcess, str]:
    up = start_up(tmp_path / "home", args=["--workdir", str(REPO)])
    up.wait_healthy()
    return up, (tmp_path / "home" / "admin-key").read_text().strip()


async def test_async_client_deploys_and_invokes(platform: tuple[UpProcess, str]) -> None:
    up, key = platform
    async with AsyncClient(up.url, key, http2=True) as client:
        assert (await client.health())["status"] == "ok"
        function = await client.create_function(
            name="echo",
            inference_url="/echo",
            inference_port=8000,
            container_image="local/echo",
            container_args=f"{sys.executable} examples/echo_server.py",
        )
        fid, vid = function["id"], function["versionId"]
        assert [f["id"] for f in await client.list_functions()] == [fid]
        await client.deploy(fid, vid, gpu="L40S", instance_type="LOCAL.GPU.L40S_1x")
        await client.wait_for_status(fid, vid, "ACTIVE", timeout_s=60)
        assert await client.invoke(fid, {"hello": "sdk"}) == {"echo": {"hello": "sdk"}, "path": "/echo"}

        account = await client.create_service_account("ci", ["invoke_function"])
        token = await client.token(account["clientId"], account["clientSecret"], ["invoke_function"])
        assert token["token_type"].lower() == "bearer" and token["expires_in"] > 0
        async with AsyncClient(up.url, token["access_token"]) as ci:
            assert (await ci.invoke(fid, {"from": "jwt"}))["echo"] == {"from": "jwt"}
            with pytest.raises(ForbiddenError) as forbidden:
                await ci.list_functions()
            assert forbidden.value.status == 403  # type: ignore[attr-defined]

        assert (await client.undeploy(fid, vid))["status"] == "INACTIVE"


def test_blocking_client_maps_problems_to_errors(platform: tuple[UpProcess, str]) -> None:
    up, key = platform
    with Client(up.url, key) as client:
        with pytest.raises(NotFoundError) as missing:
            client.get_version(str(uuid.uuid4()), str(uuid.uuid4()))
        assert missing.value.status == 404  # type: ignore[attr-defined]
        assert missing.value.problem["instance"].startswith("/v2/nvcf/functions/")  # type: ignore[attr-defined]
    with Client(up.url, "nvapi-" + "0" * 43) as stranger, pytest.raises(UnauthorizedError):
        stranger.list_functions()
