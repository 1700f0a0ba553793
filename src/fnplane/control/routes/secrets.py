"""`/v2/nvcf/secrets/...`: update the secrets of a function version (nvcf-api.md 1.7)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.services import secrets as service
from fnplane.shared.models.functions import UpdateSecretsRequest
from fnplane.shared.scopes import UPDATE_SECRETS

router = APIRouter(tags=["secrets"])


@router.put("/v2/nvcf/secrets/functions/{functionId}/versions/{versionId}", status_code=204)
async def update_function_secrets(
    functionId: str,
    versionId: str,
    body: UpdateSecretsRequest,
    request: Request,
    principal: Principal = requires(UPDATE_SECRETS),
) -> Response:
    state = request.app.state
    await service.update_secrets(state.engine, principal, functionId, versionId, body, state.secret_box)
    return Response(status_code=204)
