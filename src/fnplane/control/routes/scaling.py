"""Scale from zero on demand (fnplane extension, docs/compatibility.md):

`POST /v1/fnplane/versions/{versionId}/wake` (scope `invoke_function` for a version the caller may invoke,
or `cluster-management`) -> 202 `{"functionVersionId", "requested": bool}`. The gateway calls it when a
request waits for an ACTIVE version with no instance; one instance is requested at once instead of after
the autoscaler's next cycle. `requested=false`: the version already has (or is getting) an instance, or is
not ACTIVE.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fnplane.control.auth.dependencies import bearer_token, requires
from fnplane.control.auth.principal import Principal
from fnplane.control.autoscaler import request_instance_now, version_function_id
from fnplane.shared.errors import NotFoundError
from fnplane.shared.scopes import CLUSTER_MANAGEMENT, INVOKE_FUNCTION

router = APIRouter(tags=["autoscaling"])


@router.post("/v1/fnplane/versions/{versionId}/wake", status_code=202)
async def wake_version(
    versionId: str, request: Request, principal: Principal = requires(INVOKE_FUNCTION, CLUSTER_MANAGEMENT)
) -> JSONResponse:
    engine = request.app.state.engine
    function_id = await version_function_id(engine, versionId)
    if function_id is None:
        raise NotFoundError(f"Function version '{versionId}' not found")
    if not principal.has_any_scope(CLUSTER_MANAGEMENT):
        # raises 404 when the caller may not see (so may not invoke) the version
        await request.app.state.access_authority.grant(
            bearer_token(request), INVOKE_FUNCTION, function_id, versionId
        )
    autoscaler = getattr(request.app.state, "autoscaler", None)
    if autoscaler is not None:
        # a waiting request is an invocation: the autoscaler must not scale the version straight back to zero
        autoscaler.store.note_invoked(versionId)
    requested = await request_instance_now(engine, versionId)
    return JSONResponse({"functionVersionId": versionId, "requested": requested}, status_code=202)
