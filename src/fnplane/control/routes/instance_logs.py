"""Instance logs (fnplane extension, docs/compatibility.md):

`GET /v2/nvcf/functions/{functionId}/versions/{versionId}/instances/{instanceId}/logs?tail=100&follow=false`
with scope `list_functions_details` -> `text/plain`, one log line per line (stdout and stderr of the
function process, in order). `follow=true` keeps the response open and streams new lines as written.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from fnplane.control.auth.dependencies import bearer_token, requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import access_authority, instance_log_service
from fnplane.control.services.access import ControlAccessAuthority
from fnplane.control.services.instance_logs import InstanceLogService
from fnplane.shared.errors import NotFoundError
from fnplane.shared.scopes import LIST_FUNCTIONS_DETAILS

router = APIRouter(tags=["instances"])


@router.get("/v2/nvcf/functions/{functionId}/versions/{versionId}/instances/{instanceId}/logs")
async def instance_log(
    functionId: str,
    versionId: str,
    instanceId: str,
    request: Request,
    tail: int = Query(100, ge=0, le=100000, description="how many of the last lines"),
    follow: bool = Query(False, description="keep streaming new lines"),
    principal: Principal = requires(LIST_FUNCTIONS_DETAILS),
    authority: ControlAccessAuthority = Depends(access_authority),
    logs: InstanceLogService = Depends(instance_log_service),
) -> StreamingResponse:
    grant = await authority.grant(bearer_token(request), LIST_FUNCTIONS_DETAILS, functionId, versionId)
    if not grant.versions or grant.versions[0].owner_nca_id != principal.nca_id:
        # logs belong to the owner; a consumer of a shared function does not see its instances
        raise NotFoundError(f"Instance '{instanceId}' not found for function version '{versionId}'")
    cluster = await logs.instance_cluster(functionId, versionId, instanceId)
    chunks = logs.stream_logs(cluster, instanceId, tail=tail, follow=follow)
    # the agent's first answer (or its error) before the 200 is committed; it may hold no line yet
    # (an instance that has written nothing)
    first: list[str] = await anext(chunks, [])

    async def body() -> AsyncIterator[bytes]:
        # one consumer at a time: here, then the response's task; a client that goes away cancels
        # this inside `chunks`, whose own cleanup tells the agent to stop following
        async with contextlib.aclosing(chunks):
            # sent even when empty: the server sends the headers with the first body chunk
            yield _text(first)
            async for lines in chunks:
                if lines:
                    yield _text(lines)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


def _text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()
