"""`/v2/nvcf/authorizations/...`: share functions and versions with other accounts (nvcf-api.md 1.3)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.services import authorizations as service
from fnplane.shared.models.deployments import (
    AuthorizedPartiesListResponse,
    AuthorizedPartiesRequest,
    AuthorizedPartiesResponse,
    AuthorizedPartyRequest,
)
from fnplane.shared.scopes import AUTHORIZE_CLIENTS

router = APIRouter(tags=["authorizations"])

FUNCTION = "/v2/nvcf/authorizations/functions/{functionId}"
VERSION = "/v2/nvcf/authorizations/functions/{functionId}/versions/{functionVersionId}"


@router.post(FUNCTION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def share_function(
    functionId: str,
    body: AuthorizedPartiesRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.share(request.app.state.engine, principal, functionId, None, body.authorized_parties)
    return AuthorizedPartiesResponse(function=dto)


@router.get(FUNCTION, response_model=AuthorizedPartiesListResponse, response_model_exclude_none=True)
async def get_function_authorizations(
    functionId: str,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesListResponse:
    return AuthorizedPartiesListResponse(
        functions=await service.get_function(request.app.state.engine, principal, functionId)
    )


@router.patch(FUNCTION + "/add", response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def add_function_party(
    functionId: str,
    body: AuthorizedPartyRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.add_party(
        request.app.state.engine, principal, functionId, None, body.authorized_party
    )
    return AuthorizedPartiesResponse(function=dto)


@router.patch(
    FUNCTION + "/remove", response_model=AuthorizedPartiesResponse, response_model_exclude_none=True
)
async def remove_function_party(
    functionId: str,
    body: AuthorizedPartyRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.remove_party(
        request.app.state.engine, principal, functionId, None, body.authorized_party
    )
    return AuthorizedPartiesResponse(function=dto)


@router.delete(FUNCTION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def clear_function_parties(
    functionId: str,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    return AuthorizedPartiesResponse(
        function=await service.clear(request.app.state.engine, principal, functionId, None)
    )


@router.post(VERSION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def share_version(
    functionId: str,
    functionVersionId: str,
    body: AuthorizedPartiesRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.share(
        request.app.state.engine, principal, functionId, functionVersionId, body.authorized_parties
    )
    return AuthorizedPartiesResponse(function=dto)


@router.get(VERSION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def get_version_authorizations(
    functionId: str,
    functionVersionId: str,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.get_version(request.app.state.engine, principal, functionId, functionVersionId)
    return AuthorizedPartiesResponse(function=dto)


@router.patch(VERSION + "/add", response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def add_version_party(
    functionId: str,
    functionVersionId: str,
    body: AuthorizedPartyRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.add_party(
        request.app.state.engine, principal, functionId, functionVersionId, body.authorized_party
    )
    return AuthorizedPartiesResponse(function=dto)


@router.patch(VERSION + "/remove", response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def remove_version_party(
    functionId: str,
    functionVersionId: str,
    body: AuthorizedPartyRequest,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.remove_party(
        request.app.state.engine, principal, functionId, functionVersionId, body.authorized_party
    )
    return AuthorizedPartiesResponse(function=dto)


@router.delete(VERSION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def clear_version_parties(
    functionId: str,
    functionVersionId: str,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.clear(request.app.state.engine, principal, functionId, functionVersionId)
    return AuthorizedPartiesResponse(function=dto)
