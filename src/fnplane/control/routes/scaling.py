"""Scale from zero on demand (fnplane extension, docs/compatibility.md):

`POST /v1/fnplane/versions/{versionId}/wake` (scope `invoke_function` for a version the caller may invoke,
or `cluster-management`) -> 202 `{"functionVersionId", "requested": bool}`. The gateway calls it when a
request waits for an ACTIVE version with no instance; one instance is requested at once instead of after
the autoscaler's next cycle. `requested=false`: the version already has (or is getting) an instance, or is
not ACTIVE.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from fnplane.control.auth.dependencies import bearer_token, requires
from fnplane.control.auth.principal import Principal
from fnplane.control.autoscaler import Autoscaler
from fnplane.control.components import access_authority, autoscaler, function_service
from fnplane.control.services.access import ControlAccessAuthority
from fnplane.control.services.functions import FunctionService
from fnplane.shared.errors import NotFoundError
from fnplane.shared.scopes import CLUSTER_MANAGEMENT, INVOKE_FUNCTION

router = APIRouter(tags=["autoscaling"])


@router.post("/v1/fnplane/versions/{versionId}/wake", status_code=202)
async def wake_version(
    versionId: str,
    request: Request,
    principal: Principal = requires(INVOKE_FUNCTION, CLUSTER_MANAGEMENT),
    functions: FunctionService = Depends(function_service),
    authority: ControlAccessAuthority = Depends(access_authority),
    scaler: Autoscaler = Depends(autoscaler),
) -> JSONResponse:
    function_id = await functions.function_id_of(versionId)
    if function_id is None:
        raise NotFoundError(f"Function version '{versionId}' not found")
    if not principal.has_any_scope(CLUSTER_MANAGEMENT):
        # raises 404 when the caller may not see (so may not invoke) the version
        await authority.grant(bearer_token(request), INVOKE_FUNCTION, function_id, versionId)
    # a waiting request is an invocation: the autoscaler must not scale the version straight back to zero
    requested = await scaler.wake(versionId)
    return JSONResponse({"functionVersionId": versionId, "requested": requested}, status_code=202)
