"""`/v2/nvcf/ratelimit/...`: NVCF's legacy rate-limit endpoints (nvcf-api.md 1.8).

`PUT` takes the body of the version update (`UpdateFunctionRequest`) and applies it as that update
does; `DELETE` is NVCF's only way to remove a version's `rateLimit`. Both answer 204.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import function_service
from fnplane.control.services.functions import FunctionService
from fnplane.shared.models.functions import UpdateFunctionRequest
from fnplane.shared.scopes import UPDATE_FUNCTION

router = APIRouter(tags=["functions"])

RATE_LIMIT_PATH = "/v2/nvcf/ratelimit/functions/{functionId}/versions/{versionId}"


@router.put(RATE_LIMIT_PATH, status_code=204, deprecated=True, summary="Set a version's rate limit")
async def set_rate_limit(
    functionId: str,
    versionId: str,
    body: UpdateFunctionRequest,
    principal: Principal = requires(UPDATE_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> Response:
    await functions.update_version(principal, functionId, versionId, body)
    return Response(status_code=204)


@router.delete(RATE_LIMIT_PATH, status_code=204, summary="Remove a version's rate limit")
async def clear_rate_limit(
    functionId: str,
    versionId: str,
    principal: Principal = requires(UPDATE_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> Response:
    await functions.clear_rate_limit(principal, functionId, versionId)
    return Response(status_code=204)
