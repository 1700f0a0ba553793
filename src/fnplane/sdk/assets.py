"""Asset methods of `AsyncClient`: create, streamed upload and download, list, get, delete."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from fnplane.sdk.connection import Connection

CHUNK_BYTES = 1024 * 1024
DEFAULT_DESCRIPTION = "uploaded by fnplane.sdk"

Progress = Callable[[int], None]


def _size(source: IO[bytes]) -> int | None:
    """Bytes left in a seekable file, else None."""
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


async def _chunks(source: IO[bytes], progress: Progress | None) -> AsyncIterator[bytes]:
    sent = 0
    while True:
        chunk = await asyncio.to_thread(source.read, CHUNK_BYTES)
        if not chunk:
            return
        sent += len(chunk)
        yield chunk
        if progress is not None:
            progress(sent)


class AssetMethods:
    _conn: Connection

    async def create_asset(
        self, *, content_type: str = "application/octet-stream", description: str = ""
    ) -> dict[str, Any]:
        """A new, empty asset: {"assetId", "uploadUrl", ...} (PUT its content to the URL)."""
        body = {"contentType": content_type, "description": description or DEFAULT_DESCRIPTION}
        return dict(await self._conn.json("POST", "/v2/nvcf/assets", json=body))

    async def upload_asset(
        self,
        source: str | Path | bytes | IO[bytes],
        *,
        content_type: str = "application/octet-stream",
        description: str = "",
        progress: Progress | None = None,
    ) -> str:
        """Create an asset and upload `source` (a path, bytes or a binary file, streamed in 1 MiB
        chunks, never read whole); returns its id. `progress(bytes_sent_so_far)` after each chunk."""
        if isinstance(source, str | Path):
            with open(source, "rb") as file:  # noqa: ASYNC230 (reads go through to_thread)
                return await self.upload_asset(
                    file, content_type=content_type, description=description, progress=progress
                )
        asset = await self.create_asset(content_type=content_type, description=description)
        headers = {"Content-Type": content_type}
        if asset["description"].isascii():
            # NVCF's presigned S3 PUT signs this header; a header value cannot carry other text (httpx
            # refused it: the asset was created and never uploaded), and fnplane does not need it
            headers["x-amz-meta-nvcf-asset-description"] = asset["description"]
        content: bytes | AsyncIterator[bytes]
        if isinstance(source, bytes):
            content = source
            headers["Content-Length"] = str(len(source))
        else:
            size = _size(source)
            if size is not None:
                headers["Content-Length"] = str(size)
            content = _chunks(source, progress)
        await self._conn.send(
            "PUT",
            asset["uploadUrl"],
            headers=headers,
            content=content,
            timeout=self._conn.timeout(None),
            replayable=isinstance(source, bytes),
        )
        if isinstance(source, bytes) and progress is not None:
            progress(len(source))
        return str(asset["assetId"])

    async def download_asset(
        self, asset_id: str, destination: str | Path | IO[bytes], *, progress: Progress | None = None
    ) -> int:
        """Stream an asset's content into `destination` (a path or a binary file); returns the bytes
        written. `progress(bytes_written_so_far)` after each chunk."""
        if isinstance(destination, str | Path):
            with open(destination, "wb") as file:  # noqa: ASYNC230
                return await self.download_asset(asset_id, file, progress=progress)
        document = await self._conn.json("GET", f"/v2/nvcf/assets/{asset_id}/content-redirect")
        written = 0
        async with self._conn.stream(
            "GET", document["presignedUrl"], timeout=self._conn.timeout(None)
        ) as response:
            async for chunk in response.aiter_bytes(CHUNK_BYTES):
                await asyncio.to_thread(destination.write, chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
        return written

    async def list_assets(self) -> list[dict[str, Any]]:
        return list((await self._conn.json("GET", "/v2/nvcf/assets"))["assets"])

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        return dict((await self._conn.json("GET", f"/v2/nvcf/assets/{asset_id}"))["asset"])

    async def delete_asset(self, asset_id: str) -> None:
        await self._conn.send("DELETE", f"/v2/nvcf/assets/{asset_id}")
