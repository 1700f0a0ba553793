"""`POST /v1/fnplane/access`: the AccessAuthority over HTTP for a gateway on another host.

See shared.models.access for the contract.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from fnplane.control.auth.dependencies import bearer_token
from fnplane.control.components import access_authority
from fnplane.control.openapi import problems
from fnplane.control.services.access import ControlAccessAuthority
from fnplane.shared.models.access import AccessGrant, AccessRequest

router = APIRouter(tags=["internal"])


# the caller's own credential is judged, as the routes it stands for would (no security of its own)
@router.post(
    "/v1/fnplane/access",
    response_model=AccessGrant,
    response_model_by_alias=True,
    responses=problems(401, 403, 404),
)
async def access(
    body: AccessRequest, request: Request, authority: ControlAccessAuthority = Depends(access_authority)
) -> AccessGrant:
    return await authority.grant(bearer_token(request), body.scope, body.function_id, body.version_id)
