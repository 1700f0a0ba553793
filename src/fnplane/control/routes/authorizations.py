"""`/v2/nvcf/authorizations/...`: share functions and versions with other accounts (nvcf-api.md 1.3).

The function level and the version level have the same POST, PATCH add/remove and DELETE
operations; `_manage_routes` registers them once per level. Only their GETs differ in shape.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import authorization_service
from fnplane.control.openapi import problems
from fnplane.control.services.authorizations import AuthorizationService
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

# (function id, version id or None for the function level)
Target = tuple[str, str | None]


def _function_level(functionId: str) -> Target:
    return functionId, None


def _version_level(functionId: str, functionVersionId: str) -> Target:
    return functionId, functionVersionId


def _manage_routes(path: str, level: str, target_of: Callable[..., Target]) -> None:
    """POST (replace), PATCH add, PATCH remove and DELETE (clear) of one level's list."""

    @router.post(
        path,
        name=f"share_{level}",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def share(
        body: AuthorizedPartiesRequest,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
        service: AuthorizationService = Depends(authorization_service),
    ) -> AuthorizedPartiesResponse:
        dto = await service.share(principal, *target, body.authorized_parties)
        return AuthorizedPartiesResponse(function=dto)

    @router.patch(
        path + "/add",
        name=f"add_{level}_party",
        responses=problems(409),
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def add_party(
        body: AuthorizedPartyRequest,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
        service: AuthorizationService = Depends(authorization_service),
    ) -> AuthorizedPartiesResponse:
        dto = await service.add_party(principal, *target, body.authorized_party)
        return AuthorizedPartiesResponse(function=dto)

    @router.patch(
        path + "/remove",
        name=f"remove_{level}_party",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def remove_party(
        body: AuthorizedPartyRequest,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
        service: AuthorizationService = Depends(authorization_service),
    ) -> AuthorizedPartiesResponse:
        dto = await service.remove_party(principal, *target, body.authorized_party)
        return AuthorizedPartiesResponse(function=dto)

    @router.delete(
        path,
        name=f"clear_{level}_parties",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def clear(
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
        service: AuthorizationService = Depends(authorization_service),
    ) -> AuthorizedPartiesResponse:
        dto = await service.clear(principal, *target)
        return AuthorizedPartiesResponse(function=dto)


@router.get(FUNCTION, response_model=AuthorizedPartiesListResponse, response_model_exclude_none=True)
async def get_function_authorizations(
    functionId: str,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
    service: AuthorizationService = Depends(authorization_service),
) -> AuthorizedPartiesListResponse:
    return AuthorizedPartiesListResponse(functions=await service.get_function(principal, functionId))


@router.get(VERSION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def get_version_authorizations(
    functionId: str,
    functionVersionId: str,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
    service: AuthorizationService = Depends(authorization_service),
) -> AuthorizedPartiesResponse:
    dto = await service.get_version(principal, functionId, functionVersionId)
    return AuthorizedPartiesResponse(function=dto)


_manage_routes(FUNCTION, "function", _function_level)
_manage_routes(VERSION, "version", _version_level)
