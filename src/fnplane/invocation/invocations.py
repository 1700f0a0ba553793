"""Invocation endpoints: direct (Host header / function-id header), pexec and the legacy exec envelope.

Raw ASGI: the answer streams to the client as the worker sends it (invoke.py), so these take the
request's own `send`. Each endpoint takes only the InvocationService.
"""

from __future__ import annotations

import json

from fnplane.invocation.exec_envelope import exec_document
from fnplane.invocation.http import Request, invocation_headers, send_json
from fnplane.invocation.invoke import Call, ClientGone, Head, Invocation
from fnplane.invocation.routing import asset_ids, is_uuid, poll_seconds
from fnplane.invocation.service import InvocationService
from fnplane.shared import errors
from fnplane.shared.headers import HOP_BY_HOP
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.shared.wire import InvocationMode
from fnplane.telemetry import tracing

NO_BODY_STATUSES = frozenset({204, 304})


def _encode_headers(
    service: InvocationService, request: Request, inv_id: str, head: Head
) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in head.headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            continue
        out.append((lname.encode("latin-1"), value.encode("latin-1")))
    if head.large_result:
        out.append((b"location", service.result_location(request, inv_id).encode()))
    out += invocation_headers(inv_id, head.status)
    return out


async def respond(service: InvocationService, request: Request, inv: Invocation) -> None:
    """Run the invocation and stream its answer to the client as it arrives."""
    send = request.send
    try:
        head = await inv.begin()
    except ClientGone:
        return
    headers = _encode_headers(service, request, inv.request_id, head)
    if head.end:
        if head.status not in NO_BODY_STATUSES and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(head.body)).encode()))
        await send({"type": "http.response.start", "status": head.status, "headers": headers})
        await send({"type": "http.response.body", "body": head.body})
        return
    try:
        await send({"type": "http.response.start", "status": head.status, "headers": headers})
        with tracing.span("response stream"):
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


async def direct(
    service: InvocationService, request: Request, function_id: str, version_id: str | None
) -> None:
    grant, target = await service.admit(request.bearer(), function_id, version_id)
    poll_s = poll_seconds(request.headers, sse_default=False)
    call = Call(
        grant, target, function_id, InvocationMode.DIRECT, request.method, request.path_and_query, poll_s
    )
    inv = service.invocation(request, call)
    await respond(service, request, inv)


async def pexec(
    service: InvocationService, request: Request, function_id: str, version_id: str | None
) -> None:
    bearer = request.bearer()
    poll_s = poll_seconds(request.headers, sse_default=True)
    ids = asset_ids(request.headers.get("nvcf-input-asset-references"))
    admitted = await service.admit(bearer, function_id, version_id)
    call = await inference_call(service, request, admitted, function_id, poll_s, ids)
    await respond(service, request, service.invocation(request, call))


async def inference_call(
    service: InvocationService,
    request: Request,
    admitted: tuple[AccessGrant, VersionTarget],
    function_id: str,
    poll_s: float,
    ids: list[str],
    body: bytes | None = None,
) -> Call:
    """pexec and exec: a POST to the chosen version's inferenceUrl, with the referenced input assets."""
    grant, target = admitted
    assets = await service.asset_references(request, grant.nca_id, ids) if ids else []
    path = target.inference_url or "/"
    return Call(grant, target, function_id, InvocationMode.PEXEC, "POST", path, poll_s, assets, body)


async def read_exec(service: InvocationService, request: Request) -> tuple[float, list[str], bytes]:
    """The exec envelope `{requestHeader?, requestBody}`: poll seconds, input asset ids, the body."""
    limit = service.settings.max_exec_body_bytes
    document = await request.json_body(limit)
    if not isinstance(document, dict) or "requestBody" not in document:
        raise errors.BadRequestError(
            "the exec body must be {requestHeader?, requestBody}", field="requestBody", rule="required"
        )
    # only null means absent: [] or "" is a wrong type, not an empty header
    header = document.get("requestHeader")
    header = {} if header is None else header
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
    refs = header.get("inputAssetReferences")
    refs = [] if refs is None else refs
    if not isinstance(refs, list):
        raise errors.BadRequestError(
            "inputAssetReferences must be a list",
            field="requestHeader.inputAssetReferences",
            rule="list of UUIDs",
        )
    for index, ref in enumerate(refs):
        # named by the body's own path, not by the header the ids would have come in on pexec
        if not isinstance(ref, str) or not is_uuid(ref.strip()):
            raise errors.BadRequestError(
                f"inputAssetReferences.{index} is not an asset id (UUID)",
                field=f"requestHeader.inputAssetReferences.{index}",
                rule="UUID",
            )
    ids = asset_ids(",".join(refs))
    return poll_s, ids, json.dumps(document["requestBody"]).encode()


async def exec_(
    service: InvocationService, request: Request, function_id: str, version_id: str | None
) -> None:
    # admitted before the body is read: an anonymous or unknown caller gets its 401/404 for free
    admitted = await service.admit(request.bearer(), function_id, version_id)
    limit = service.settings.max_exec_body_bytes
    poll_s, ids, body = await read_exec(service, request)
    call = await inference_call(service, request, admitted, function_id, poll_s, ids, body)
    inv = service.invocation(request, call)
    try:
        head = await inv.begin()
    except ClientGone:
        return
    data = bytearray(head.body)
    try:
        if not head.end:
            async for chunk in inv.chunks():
                data += chunk
                if len(data) > limit * 4:
                    raise errors.PayloadTooLargeError("the exec response is too large; use pexec")
    except ClientGone:
        return
    finally:
        await inv.aclose()
    location = service.result_location(request, inv.request_id) if head.large_result else None
    status, doc = exec_document(inv.request_id, head.status, head.headers, bytes(data), location)
    await send_json(request.send, status, doc, invocation_headers(inv.request_id, status))
