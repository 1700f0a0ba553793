"""`/v2/nvcf/authorizations/...`: share functions and versions with other accounts (nvcf-api.md 1.3).

The function level and the version level have the same POST, PATCH add/remove and DELETE
operations; `_manage_routes` registers them once per level. Only their GETs differ in shape.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request

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
        request: Request,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
    ) -> AuthorizedPartiesResponse:
        dto = await service.share(request.app.state.engine, principal, *target, body.authorized_parties)
        return AuthorizedPartiesResponse(function=dto)

    @router.patch(
        path + "/add",
        name=f"add_{level}_party",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def add_party(
        body: AuthorizedPartyRequest,
        request: Request,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
    ) -> AuthorizedPartiesResponse:
        dto = await service.add_party(request.app.state.engine, principal, *target, body.authorized_party)
        return AuthorizedPartiesResponse(function=dto)

    @router.patch(
        path + "/remove",
        name=f"remove_{level}_party",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def remove_party(
        body: AuthorizedPartyRequest,
        request: Request,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
    ) -> AuthorizedPartiesResponse:
        dto = await service.remove_party(request.app.state.engine, principal, *target, body.authorized_party)
        return AuthorizedPartiesResponse(function=dto)

    @router.delete(
        path,
        name=f"clear_{level}_parties",
        response_model=AuthorizedPartiesResponse,
        response_model_exclude_none=True,
    )
    async def clear(
        request: Request,
        target: Target = Depends(target_of),
        principal: Principal = requires(AUTHORIZE_CLIENTS),
    ) -> AuthorizedPartiesResponse:
        dto = await service.clear(request.app.state.engine, principal, *target)
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


@router.get(VERSION, response_model=AuthorizedPartiesResponse, response_model_exclude_none=True)
async def get_version_authorizations(
    functionId: str,
    functionVersionId: str,
    request: Request,
    principal: Principal = requires(AUTHORIZE_CLIENTS),
) -> AuthorizedPartiesResponse:
    dto = await service.get_version(request.app.state.engine, principal, functionId, functionVersionId)
    return AuthorizedPartiesResponse(function=dto)


_manage_routes(FUNCTION, "function", _function_level)
_manage_routes(VERSION, "version", _version_level)
