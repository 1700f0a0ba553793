"""Assets (nvcf-api.md 1.5): metadata in a KV bucket per account, bytes in the object store, 24 h.

    POST   /v2/nvcf/assets                      {contentType, description} -> {assetId, uploadUrl, ...}
    PUT    /v2/nvcf/assets/{id}/upload?...       the signed, expiring upload URL (streamed to the store)
    GET    /v2/nvcf/assets                       {"assets": [{"assetId"}]}
    GET    /v2/nvcf/assets/{id}                  {"asset": {assetId, description, contentType, createdAt}}
    GET    /v2/nvcf/assets/{id}/content-redirect {"presignedUrl"}
    DELETE /v2/nvcf/assets/{id}                  204
All but the upload require `invoke_function`; the upload URL's signature is its credential.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fnplane.bus.buckets import Buckets
from fnplane.invocation.access import CachedAccess
from fnplane.invocation.http import (
    Request,
    names_another_media_type,
    send_bytes,
    send_json,
    send_unsupported_media_type,
)
from fnplane.invocation.routing import is_uuid
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.shared import errors, scopes, subjects
from fnplane.shared.models.invocation import AssetRecord

MAX_ASSET_REQUEST_BYTES = 64 * 1024
MAX_CONTENT_TYPE_CHARS = 255
# contentType is sent back as the Content-Type of the asset's download: visible ASCII and spaces only
# (a CR, LF or NUL there made every download, and every invocation naming the asset, a 500)
_CONTENT_TYPE = re.compile(r"[\x20-\x7e]+")
# description: stored as JSON text and sent as NVCF's x-amz-meta-nvcf-asset-description header, so
# no control characters and no lone UTF-16 surrogate (which no encoder can write: it was a 500)
_BAD_DESCRIPTION = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def upload_path(asset_id: str) -> str:
    return f"/v2/nvcf/assets/{asset_id}/upload"


def content_path(asset_id: str) -> str:
    return f"/v2/nvcf/assets/{asset_id}/content"


async def asset_record(stores: Buckets, nca_id: str, asset_id: str) -> AssetRecord | None:
    value = await stores.get_asset(subjects.asset_key(nca_id, asset_id))
    return AssetRecord.model_validate_json(value) if value else None


class AccountQuota:
    """The bytes one upload may add: at most `max_asset_bytes` (else 413), and with the account's stored
    assets and every upload of the account in progress on this gateway at most
    `max_asset_bytes_per_account` (else 429). Each gateway counts its own uploads in progress; the
    object store's `max_bytes` bounds what several gateways admit together."""

    def __init__(
        self, settings: GatewaySettings, nca_id: str, *, stored: int, uploading: dict[str, int]
    ) -> None:
        self._nca_id = nca_id
        self._max_asset = settings.max_asset_bytes
        self._max_account = settings.max_asset_bytes_per_account
        self._stored = stored
        self._uploading = uploading
        self.received = 0

    def check(self, declared: int) -> None:
        """Before reading: a declared Content-Length already over a limit."""
        self._check(declared, self._uploading.get(self._nca_id, 0) + declared)

    def add(self, size: int) -> None:
        """Count bytes as they arrive; raises once a limit is passed."""
        self.received += size
        self._uploading[self._nca_id] = self._uploading.get(self._nca_id, 0) + size
        self._check(self.received, self._uploading[self._nca_id])

    def release(self) -> None:
        left = self._uploading.get(self._nca_id, 0) - self.received
        if left > 0:
            self._uploading[self._nca_id] = left
        else:
            self._uploading.pop(self._nca_id, None)
        self.received = 0

    def _check(self, asset_bytes: int, uploading: int) -> None:
        if asset_bytes > self._max_asset:
            raise errors.PayloadTooLargeError(
                f"the asset exceeds the limit of {self._max_asset} bytes per asset"
            )
        used = self._stored + uploading
        if used > self._max_account:
            raise errors.TooManyRequestsError(
                f"account {self._nca_id}'s assets would exceed its limit of {self._max_account} bytes "
                f"({self._stored} stored; delete some, or wait until they expire)"
            )


class AssetEndpoints:
    def __init__(
        self, settings: GatewaySettings, *, access: CachedAccess, stores: Buckets, signer: UrlSigner
    ) -> None:
        self._settings = settings
        self._access = access
        self._stores = stores
        self._signer = signer
        # bytes of uploads in progress on this gateway, per account
        self._uploading: dict[str, int] = {}

    async def _put_record(self, record: AssetRecord) -> None:
        key = subjects.asset_key(record.nca_id, record.asset_id)
        await self._stores.put_asset(key, record.model_dump_json(by_alias=True).encode())

    async def _record_by_id(self, asset_id: str) -> AssetRecord:
        """The record of an asset of any account (signed URLs carry no account)."""
        keys = await self._stores.asset_keys(f"*.{asset_id}")
        value = await self._stores.get_asset(keys[0]) if keys else None
        if value is None:
            raise errors.NotFoundError(f"asset {asset_id} not found")
        return AssetRecord.model_validate_json(value)

    async def _nca(self, request: Request) -> str:
        grant = await self._access.grant(request.bearer(), scopes.INVOKE_FUNCTION)
        return grant.nca_id

    async def _owned(self, request: Request, asset_id: str) -> AssetRecord:
        nca_id = await self._nca(request)
        record = await asset_record(self._stores, nca_id, asset_id) if is_uuid(asset_id) else None
        if record is None:
            raise errors.NotFoundError(f"asset {asset_id} not found")
        return record

    async def _account_records(self, nca_id: str) -> list[AssetRecord]:
        records = []
        for key in await self._stores.asset_keys(subjects.asset_keys(nca_id)):
            value = await self._stores.get_asset(key)
            if value:
                records.append(AssetRecord.model_validate_json(value))
        return records

    async def create(self, request: Request) -> None:
        nca_id = await self._nca(request)
        held = len(await self._stores.asset_keys(subjects.asset_keys(nca_id)))
        if held >= self._settings.max_assets_per_account:
            raise errors.TooManyRequestsError(
                f"account {nca_id} holds {held} assets, its limit is {self._settings.max_assets_per_account}"
                " (delete some, or wait until they expire)"
            )
        if names_another_media_type(request):
            # POST /v2/nvcf/assets is an NVCF API endpoint: it consumes application/json only
            await send_unsupported_media_type(request)
            return
        doc = await request.json_body(MAX_ASSET_REQUEST_BYTES)
        if not isinstance(doc, dict):
            raise errors.BadRequestError("body must be a JSON object", field="body", rule="object")
        for field in ("contentType", "description"):
            if not isinstance(doc.get(field), str) or not doc[field].strip():
                raise errors.BadRequestError(f"{field} is required", field=field, rule="non-empty string")
        content_type, description = doc["contentType"], doc["description"]
        if len(content_type) > MAX_CONTENT_TYPE_CHARS or not _CONTENT_TYPE.fullmatch(content_type):
            raise errors.BadRequestError(
                "contentType must be a media type such as application/octet-stream",
                field="contentType",
                rule=f"at most {MAX_CONTENT_TYPE_CHARS} visible ASCII characters and spaces",
            )
        if _BAD_DESCRIPTION.search(description):
            raise errors.BadRequestError(
                "description holds a control character or a lone UTF-16 surrogate",
                field="description",
                rule="text without control characters (a tab is allowed)",
            )
        record = AssetRecord(
            assetId=str(uuid.uuid4()),
            ncaId=nca_id,
            contentType=content_type,
            description=description,
            createdAt=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        )
        await self._put_record(record)
        base = request.base_url(self._settings.public_url)
        url = self._signer.sign(base, "PUT", upload_path(record.asset_id), self._settings.upload_url_ttl_s)
        await send_json(
            request.send,
            200,
            {
                "assetId": record.asset_id,
                "uploadUrl": url,
                "contentType": record.content_type,
                "description": record.description,
            },
        )

    async def upload(self, request: Request, asset_id: str) -> None:
        self._signer.verify("PUT", request.path, request.query())
        record = await self._record_by_id(asset_id)
        others = await self._account_records(record.nca_id)
        stored = sum(r.size or 0 for r in others if r.asset_id != asset_id)
        quota = AccountQuota(self._settings, record.nca_id, stored=stored, uploading=self._uploading)
        declared = request.headers.get("content-length", "")
        if declared.isdigit():
            quota.check(int(declared))

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise errors.BadRequestError("client disconnected during the upload")
                chunk = message.get("body", b"")
                quota.add(len(chunk))
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        name = subjects.asset_object(record.nca_id, asset_id)
        try:
            size = await self._stores.put_stream(name, body())
        finally:
            quota.release()
        record.uploaded = True
        record.size = size
        key = subjects.asset_key(record.nca_id, asset_id)
        if not await self._stores.replace_asset(key, record.model_dump_json(by_alias=True).encode()):
            # deleted while its bytes arrived: the delete stands (a plain put brought the asset back)
            await self._stores.delete_object(name)
            raise errors.NotFoundError(f"asset {asset_id} was deleted during its upload")
        await send_bytes(request.send, 200, b"")

    async def list(self, request: Request) -> None:
        nca_id = await self._nca(request)
        keys = await self._stores.asset_keys(subjects.asset_keys(nca_id))
        await send_json(
            request.send, 200, {"assets": [{"assetId": k.split(".", 1)[1]} for k in sorted(keys)]}
        )

    async def get(self, request: Request, asset_id: str) -> None:
        record = await self._owned(request, asset_id)
        await send_json(
            request.send,
            200,
            {
                "asset": {
                    "assetId": record.asset_id,
                    "description": record.description or "Description not available",
                    "contentType": record.content_type,
                    "createdAt": record.created_at,
                }
            },
        )

    async def content_redirect(self, request: Request, asset_id: str) -> None:
        await self._owned(request, asset_id)
        base = request.base_url(self._settings.public_url)
        url = self._signer.sign(base, "GET", content_path(asset_id), self._settings.upload_url_ttl_s)
        await send_json(request.send, 200, {"presignedUrl": url})

    async def content(self, request: Request, asset_id: str) -> None:
        self._signer.verify("GET", request.path, request.query())
        record = await self._record_by_id(asset_id)
        info = await self._stores.object_info(subjects.asset_object(record.nca_id, asset_id))
        headers = [
            (b"content-type", record.content_type.encode()),
            (b"content-length", str(info.size).encode()),
        ]
        await request.send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in self._stores.iter_object(info):
            await request.send({"type": "http.response.body", "body": chunk, "more_body": True})
        await request.send({"type": "http.response.body", "body": b""})

    async def delete(self, request: Request, asset_id: str) -> None:
        record = await self._owned(request, asset_id)
        await self._stores.delete_asset(subjects.asset_key(record.nca_id, asset_id))
        await self._stores.delete_object(subjects.asset_object(record.nca_id, asset_id))
        await send_bytes(request.send, 204, b"")
