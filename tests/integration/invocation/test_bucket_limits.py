"""Every bucket has a JetStream size bound (issue 8 item 6): a full asset store refuses the upload
with a problem the client can act on, and the bounds are the gateway's settings."""

from __future__ import annotations

import httpx
import nats
import pytest

from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects

MIB = 1024 * 1024


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        object_store_max_bytes=MIB,
        status_bucket_max_bytes=2 * MIB,
        max_asset_bytes_per_account=64 * MIB,
    )


async def test_buckets_are_bounded_and_a_full_asset_store_refuses_uploads(stack) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        bounds = {
            subjects.object_stream(subjects.OBJECT_BUCKET): MIB,
            subjects.kv_stream(subjects.STATUS_BUCKET): 2 * MIB,
            subjects.kv_stream(subjects.ASSET_BUCKET): 64 * MIB,
            subjects.kv_stream(subjects.GATEWAY_BUCKET): MIB,
        }
        for stream, max_bytes in bounds.items():
            assert (await js.stream_info(stream)).config.max_bytes == max_bytes, stream
    finally:
        await nc.close()

    async def upload(size: int) -> httpx.Response:
        created = await stack.client.post(
            "/v2/nvcf/assets", json={"contentType": "application/octet-stream", "description": "d"}
        )
        async with httpx.AsyncClient(timeout=30) as plain:
            return await plain.put(created.json()["uploadUrl"], content=b"x" * size)

    assert (await upload(700_000)).status_code == 200
    full = await upload(700_000)
    assert full.status_code == 429, full.text
    assert full.headers["content-type"] == "application/problem+json"
    assert full.headers["retry-after"].isdigit()
    assert "full" in full.json()["detail"]
