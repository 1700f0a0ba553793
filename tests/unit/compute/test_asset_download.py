"""The worker's download of an input asset from its signed URL, against a real HTTP server that fails
the way networks do: what the caller is told (errorCode 910) is a sentence, never aiohttp's repr."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fnplane.compute.worker.request_dirs import RequestRoot
from fnplane.compute.worker.results import download_assets
from fnplane.shared import errors, wire


@pytest.fixture
async def cut_short_url() -> AsyncIterator[str]:
    """A server that promises 1,000 bytes and closes the connection after 10."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2/nvcf/assets/a/content"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_download_cut_short_is_told_in_a_sentence(tmp_path: Path, cut_short_url: str) -> None:
    root = RequestRoot(str(tmp_path / "requests"))
    rid = str(uuid.uuid4())
    dirs = root.create(rid)
    asset_id = str(uuid.uuid4())
    ref = wire.AssetReference(asset_id=asset_id, object_name=f"acct/{asset_id}", url=cut_short_url)
    try:
        with pytest.raises(errors.UnavailableError) as raised:
            await download_assets(None, [ref], dirs, timeout_s=10)  # type: ignore[arg-type]
    finally:
        dirs.close()
        root.remove(rid)
    assert str(raised.value.detail) == f"asset {asset_id} not downloaded: the download was cut short"
