"""Instance logs (fnplane extension, docs/compatibility.md):

`GET /v2/nvcf/functions/{functionId}/versions/{versionId}/instances/{instanceId}/logs?tail=100&follow=false`
with scope `list_functions_details` -> `text/plain`, one log line per line (stdout and stderr of the
function process, in order). `follow=true` keeps the response open and streams new lines as written.
"""

from __future__ import annotations

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
    lines = logs.stream_logs(cluster, instanceId, tail=tail, follow=follow)
    # the first answer (or the agent's error) before the 200 is committed
    first: list[str] = []
    try:
        first.append(await anext(lines))
    except StopAsyncIteration:
        pass

    async def body() -> AsyncIterator[bytes]:
        try:
            for line in first:
                yield (line + "\n").encode()
            async for line in lines:
                yield (line + "\n").encode()
        finally:
            await lines.aclose()

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")
