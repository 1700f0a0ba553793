"""`/v2/nvcf/functions/...`: register, list, get, update and delete function versions (nvcf-api.md 1.1)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.services import functions as service
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


@router.post("/v2/nvcf/functions", response_model=FunctionResponse, response_model_exclude_none=True)
async def create_function(
    body: CreateFunctionRequest, request: Request, principal: Principal = requires(REGISTER_FUNCTION)
) -> FunctionResponse:
    state = request.app.state
    return FunctionResponse(
        function=await service.create_function(state.engine, principal, body, state.secret_box)
    )


@router.post(
    "/v2/nvcf/functions/{functionId}/versions",
    response_model=FunctionResponse,
    response_model_exclude_none=True,
)
async def create_version(
    functionId: str,
    body: CreateFunctionRequest,
    request: Request,
    principal: Principal = requires(REGISTER_FUNCTION),
) -> FunctionResponse:
    state = request.app.state
    dto = await service.create_version(state.engine, principal, functionId, body, state.secret_box)
    return FunctionResponse(function=dto)


@router.get("/v2/nvcf/functions", response_model=FunctionListResponse, response_model_exclude_none=True)
async def list_functions(
    request: Request,
    visibility: str | None = Query(None, description="comma list of authorized, private, public"),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
) -> FunctionListResponse:
    wanted = service.parse_visibility(visibility)
    return FunctionListResponse(
        functions=await service.list_functions(request.app.state.engine, principal, wanted)
    )


@router.get("/v2/nvcf/functions/ids", response_model=FunctionIdsResponse, response_model_exclude_none=True)
async def list_function_ids(
    request: Request,
    visibility: str | None = Query(None, description="comma list of authorized, private, public"),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
) -> FunctionIdsResponse:
    wanted = service.parse_visibility(visibility)
    ids = await service.list_function_ids(request.app.state.engine, principal, wanted)
    return FunctionIdsResponse(function_ids=ids)


@router.get(
    "/v2/nvcf/functions/{functionId}/versions",
    response_model=FunctionListResponse,
    response_model_exclude_none=True,
)
async def list_versions(
    functionId: str,
    request: Request,
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
) -> FunctionListResponse:
    return FunctionListResponse(
        functions=await service.list_versions(request.app.state.engine, principal, functionId)
    )


@router.get(
    "/v2/nvcf/functions/{functionId}/versions/{functionVersionId}",
    response_model=FunctionResponse,
    response_model_exclude_none=True,
)
async def get_version(
    functionId: str,
    functionVersionId: str,
    request: Request,
    includeSecrets: bool = Query(True),
    principal: Principal = requires(LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS),
) -> FunctionResponse:
    dto = await service.get_version(
        request.app.state.engine,
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
    request: Request,
    principal: Principal = requires(UPDATE_FUNCTION),
) -> FunctionResponse:
    """Tags and rate limit; the `/metadata/...` path is NVCF's deprecated alias of the same update."""
    engine = request.app.state.engine
    dto = await service.update_version(engine, principal, functionId, functionVersionId, body)
    return FunctionResponse(function=dto)


@router.delete("/v2/nvcf/functions/{functionId}/versions/{functionVersionId}", status_code=204)
async def delete_version(
    functionId: str,
    functionVersionId: str,
    request: Request,
    principal: Principal = requires(DELETE_FUNCTION),
) -> Response:
    await service.delete_version(
        request.app.state.engine, principal, functionId, functionVersionId, notify=request.app.state.notify
    )
    return Response(status_code=204)
