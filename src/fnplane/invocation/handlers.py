"""Invocation routes: direct (Host header / function-id header), pexec and the legacy exec envelope."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fnplane.invocation.access import choose_version
from fnplane.invocation.http import Request, invocation_headers, send_json
from fnplane.invocation.invoke import ClientGone, Head, Invocation
from fnplane.invocation.routing import asset_ids, poll_seconds
from fnplane.shared import errors, scopes, subjects
from fnplane.shared.headers import HOP_BY_HOP
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.wire import AssetReference, InvocationMode, nvcf_status

if TYPE_CHECKING:
    from fnplane.invocation.app import Gateway

NO_BODY_STATUSES = frozenset({204, 304})


def result_path(request_id: str) -> str:
    return f"/v2/nvcf/pexec/results/{request_id}"


def _encode_headers(gw: Gateway, request: Request, inv_id: str, head: Head) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in head.headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            continue
        out.append((lname.encode("latin-1"), value.encode("latin-1")))
    if head.large_result:
        url = gw.signer.sign(
            request.base_url(gw.settings.public_url), "GET", result_path(inv_id), gw.settings.result_url_ttl_s
        )
        out.append((b"location", url.encode()))
    out += invocation_headers(inv_id, head.status)
    return out


async def respond(gw: Gateway, request: Request, inv: Invocation) -> None:
    """Run the invocation and stream its answer to the client as it arrives."""
    send = request.send
    try:
        head = await inv.begin()
    except ClientGone:
        return
    headers = _encode_headers(gw, request, inv.request_id, head)
    if head.end:
        if head.status not in NO_BODY_STATUSES and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(head.body)).encode()))
        await send({"type": "http.response.start", "status": head.status, "headers": headers})
        await send({"type": "http.response.body", "body": head.body})
        return
    try:
        await send({"type": "http.response.start", "status": head.status, "headers": headers})
        if head.body:
            await send({"type": "http.response.body", "body": head.body, "more_body": True})
        async for chunk in inv.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except ClientGone:
        return
    except OSError:
        await inv.aclose(client_gone=True)
        return
    finally:
        await inv.aclose()


async def admit(
    gw: Gateway, bearer: str, function_id: str, version_id: str | None
) -> tuple[AccessGrant, VersionTarget]:
    """Every invocation's gate: access, version choice, rate limits, and a wake for an idle version."""
    grant = await gw.access.grant(bearer, scopes.INVOKE_FUNCTION, function_id, version_id)
    target = choose_version(grant, version_id)
    gw.rate_limiter.check(grant, target)
    gw.wake_if_idle(target.version_id, bearer)
    return grant, target


async def direct(gw: Gateway, request: Request, function_id: str, version_id: str | None) -> None:
    bearer = request.bearer()
    grant, target = await admit(gw, bearer, function_id, version_id)
    inv = Invocation(
        gw,
        request,
        grant=grant,
        target=target,
        function_id=function_id,
        mode=InvocationMode.DIRECT,
        method=request.method,
        path=request.path_and_query,
        poll_s=poll_seconds(request.headers, sse_default=False),
    )
    await respond(gw, request, inv)


async def _asset_references(gw: Gateway, nca_id: str, ids: list[str]) -> list[AssetReference]:
    refs = []
    for asset_id in ids:
        record = await gw.assets.get_record(nca_id, asset_id)
        if record is None or not record.uploaded:
            raise errors.NotFoundError(f"asset {asset_id} not found")
        refs.append(
            AssetReference(
                asset_id=asset_id,
                object_name=subjects.asset_object(nca_id, asset_id),
                content_type=record.content_type,
            )
        )
    return refs


async def pexec(gw: Gateway, request: Request, function_id: str, version_id: str | None) -> None:
    bearer = request.bearer()
    poll_s = poll_seconds(request.headers, sse_default=True)
    ids = asset_ids(request.headers.get("nvcf-input-asset-references"))
    inv = await _inference_call(gw, request, bearer, function_id, version_id, poll_s, ids)
    await respond(gw, request, inv)


async def _inference_call(
    gw: Gateway,
    request: Request,
    bearer: str,
    function_id: str,
    version_id: str | None,
    poll_s: float,
    ids: list[str],
    body: bytes | None = None,
) -> Invocation:
    """pexec and exec: a POST to the chosen version's inferenceUrl, with the referenced input assets."""
    grant, target = await admit(gw, bearer, function_id, version_id)
    assets = await _asset_references(gw, grant.nca_id, ids) if ids else []
    return Invocation(
        gw,
        request,
        grant=grant,
        target=target,
        function_id=function_id,
        mode=InvocationMode.PEXEC,
        method="POST",
        path=target.inference_url or "/",
        poll_s=poll_s,
        assets=assets,
        body=body,
    )


def exec_document(
    request_id: str, head_status: int, headers: list[tuple[str, str]], body: bytes, location: str | None
) -> tuple[int, dict[str, Any]]:
    """NVCF's legacy wrapper: {reqId, status, responseReference?, percentComplete?, errorCode?, response?}."""
    doc: dict[str, Any] = {"reqId": request_id, "status": nvcf_status(head_status).value}
    percent = next((v for k, v in headers if k.lower() == "nvcf-percent-complete"), None)
    if head_status == 302 and location:
        doc["status"] = "fulfilled"
        doc["responseReference"] = location
        doc["percentComplete"] = 100
        return 200, doc
    if body:
        try:
            doc["response"] = json.loads(body)
        except ValueError:
            doc["response"] = body.decode("utf-8", errors="replace")
    if head_status == 202:
        if percent is not None and percent.isdigit():
            doc["percentComplete"] = int(percent)
        return 202, doc
    if head_status < 400:
        doc["percentComplete"] = 100
        return 200, doc
    doc["errorCode"] = head_status
    return head_status, doc


async def exec_(gw: Gateway, request: Request, function_id: str, version_id: str | None) -> None:
    bearer = request.bearer()
    document = await request.json_body(gw.settings.max_exec_body_bytes)
    if not isinstance(document, dict) or "requestBody" not in document:
        raise errors.BadRequestError(
            "the exec body must be {requestHeader?, requestBody}", field="requestBody", rule="required"
        )
    header = document.get("requestHeader") or {}
    if not isinstance(header, dict):
        raise errors.BadRequestError("requestHeader must be an object", field="requestHeader", rule="object")
    poll_raw = header.get("pollDurationSeconds")
    headers = dict(request.headers)
    if poll_raw is not None:
        headers["nvcf-poll-seconds"] = str(poll_raw)
    try:
        poll_s = poll_seconds(headers, sse_default=False)
    except errors.BadRequestError as error:
        if poll_raw is None:
            raise
        # name the field the client actually sent
        field = "requestHeader.pollDurationSeconds"
        detail = str(error).replace("NVCF-POLL-SECONDS", field)
        raise errors.BadRequestError(detail, field=field, rule=error.rule) from None
    refs = header.get("inputAssetReferences") or []
    if not isinstance(refs, list):
        raise errors.BadRequestError(
            "inputAssetReferences must be a list",
            field="requestHeader.inputAssetReferences",
            rule="list of UUIDs",
        )
    ids = asset_ids(",".join(str(r) for r in refs))
    body = json.dumps(document["requestBody"]).encode()
    inv = await _inference_call(gw, request, bearer, function_id, version_id, poll_s, ids, body)
    try:
        head = await inv.begin()
    except ClientGone:
        return
    data = bytearray(head.body)
    try:
        if not head.end:
            async for chunk in inv.chunks():
                data += chunk
                if len(data) > gw.settings.max_exec_body_bytes * 4:
                    raise errors.PayloadTooLargeError("the exec response is too large; use pexec")
    except ClientGone:
        return
    finally:
        await inv.aclose()
    encoded = _encode_headers(gw, request, inv.request_id, head)
    location = next((v.decode() for k, v in encoded if k == b"location"), None)
    status, doc = exec_document(inv.request_id, head.status, head.headers, bytes(data), location)
    await send_json(request.send, status, doc, invocation_headers(inv.request_id, status))
