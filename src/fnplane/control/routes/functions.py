"""`/v2/nvcf/functions/...`: register, list, get, update and delete function versions (nvcf-api.md 1.1)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import function_service
from fnplane.control.services.functions import FunctionService, parse_visibility
from fnplane.shared.models.functions import (
    CreateFunctionRequest,
    FunctionIdsResponse,
    FunctionListResponse,
    FunctionResponse,
    UpdateFunctionRequest,
)
from fnplane.shared.scopes import (
    DELETE_FUNCTION,
    LIST_FUNCTIONS,
    LIST_FUNCTIONS_DETAILS,
    REGISTER_FUNCTION,
    UPDATE_FUNCTION,
)

# every route answers with response_model_exclude_none: NVCF omits null fields (nvcf-api.md 0.2)
router = APIRouter(tags=["functions"])

VISIBILITY_QUERY = "authorized, private, public: repeated, comma-separated or both (default all three)"


@router.post("/v2/nvcf/functions", response_model=FunctionResponse, response_model_exclude_none=True)
async def create_function(
    body: CreateFunctionRequest,
    principal: Principal = requires(REGISTER_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> FunctionResponse:
    return FunctionResponse(function=await functions.create_function(principal, body))


@router.post(
    "/v2/nvcf/functions/{functionId}/versions",
    response_model=FunctionResponse,
    response_model_exclude_none=True,
)
async def create_version(
    functionId: str,
    body: CreateFunctionRequest,
    principal: Principal = requires(REGISTER_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> FunctionResponse:
    return FunctionResponse(function=await functions.create_version(principal, functionId, body))


@router.get("/v2/nvcf/functions", response_model=FunctionListResponse, response_model_exclude_none=True)
async def list_functions(
    visibility: list[str] | None = Query(None, description=VISIBILITY_QUERY),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
    functions: FunctionService = Depends(function_service),
) -> FunctionListResponse:
    wanted = parse_visibility(visibility)
    return FunctionListResponse(functions=await functions.list_functions(principal, wanted))


@router.get("/v2/nvcf/functions/ids", response_model=FunctionIdsResponse, response_model_exclude_none=True)
async def list_function_ids(
    visibility: list[str] | None = Query(None, description=VISIBILITY_QUERY),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
    functions: FunctionService = Depends(function_service),
) -> FunctionIdsResponse:
    wanted = parse_visibility(visibility)
    return FunctionIdsResponse(function_ids=await functions.list_function_ids(principal, wanted))


@router.get(
    "/v2/nvcf/functions/{functionId}/versions",
    response_model=FunctionListResponse,
    response_model_exclude_none=True,
)
async def list_versions(
    functionId: str,
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
    functions: FunctionService = Depends(function_service),
) -> FunctionListResponse:
    return FunctionListResponse(functions=await functions.list_versions(principal, functionId))


@router.get(
    "/v2/nvcf/functions/{functionId}/versions/{functionVersionId}",
    response_model=FunctionResponse,
    response_model_exclude_none=True,
)
async def get_version(
    functionId: str,
    functionVersionId: str,
    includeSecrets: bool = Query(True),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
    functions: FunctionService = Depends(function_service),
) -> FunctionResponse:
    dto = await functions.get_version(
        principal,
        functionId,
        functionVersionId,
        details=principal.has_any_scope(LIST_FUNCTIONS_DETAILS),
        include_secrets=includeSecrets,
    )
    return FunctionResponse(function=dto)


@router.put(
    "/v2/nvcf/metadata/functions/{functionId}/versions/{functionVersionId}",
    response_model=FunctionResponse,
    deprecated=True,
    response_model_exclude_none=True,
    name="update_version_metadata",
)
@router.put(
    "/v2/nvcf/functions/{functionId}/versions/{functionVersionId}",
    response_model=FunctionResponse,
    response_model_exclude_none=True,
)
async def update_version(
    functionId: str,
    functionVersionId: str,
    body: UpdateFunctionRequest,
    principal: Principal = requires(UPDATE_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> FunctionResponse:
    """Tags and rate limit; the `/metadata/...` path is NVCF's deprecated alias of the same update."""
    dto = await functions.update_version(principal, functionId, functionVersionId, body)
    return FunctionResponse(function=dto)


@router.delete("/v2/nvcf/functions/{functionId}/versions/{functionVersionId}", status_code=204)
async def delete_version(
    functionId: str,
    functionVersionId: str,
    principal: Principal = requires(DELETE_FUNCTION),
    functions: FunctionService = Depends(function_service),
) -> Response:
    await functions.delete_version(principal, functionId, functionVersionId)
    return Response(status_code=204)
