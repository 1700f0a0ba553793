"""Every bucket has a JetStream size bound (issue 8 item 6): a full asset store refuses the upload
with a problem the client can act on, and the bounds are the gateway's settings."""

from __future__ import annotations

import httpx
import pytest

from fnplane.invocation.settings import GatewaySettings
from fnplane.shared import subjects, topology

MIB = 1024 * 1024


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        object_store_max_bytes=MIB,
        status_bucket_max_bytes=2 * MIB,
        max_asset_bytes_per_account=64 * MIB,
    )


async def test_buckets_are_bounded_and_a_full_asset_store_refuses_uploads(stack) -> None:
    nc = await stack.bus.gateway_client()
    try:
        js = nc.jetstream()
        bounds = {
            subjects.object_stream(subjects.OBJECT_BUCKET): MIB,
            subjects.kv_stream(subjects.STATUS_BUCKET): 2 * MIB,
            subjects.kv_stream(subjects.ASSET_BUCKET): 64 * MIB,
            subjects.kv_stream(subjects.GATEWAY_BUCKET): MIB,
            subjects.kv_stream(subjects.IDEMPOTENCY_BUCKET): topology.IDEMPOTENCY_MAX_BYTES,
            subjects.kv_stream(subjects.REQUEST_INDEX_BUCKET): topology.REQUEST_INDEX_MAX_BYTES,
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


async def test_a_version_result_store_reserves_no_storage(stack) -> None:
    """JetStream reserves a stream's max_bytes at creation: with a bound per version, a server ran out
    of store after a handful of deployed versions. Many versions' result stores fit in any store."""
    import uuid

    for _ in range(40):  # 40 x 8 GiB would be 320 GiB of reservations: more than this disk
        await stack.gateway.bus.ensure_stream(str(uuid.uuid4()))
    nc = await stack.bus.gateway_client()
    try:
        version = str(uuid.uuid4())
        await stack.gateway.bus.ensure_stream(version)
        info = await nc.jetstream().stream_info(subjects.object_stream(subjects.result_bucket(version)))
        assert info.config.max_bytes in (None, -1)
    finally:
        await nc.close()
