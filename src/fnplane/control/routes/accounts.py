"""`/v2/nvcf/accounts`: super-admin account management (scope `account_setup`; nvcf-api.md 1.12)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse

from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import auth_components
from fnplane.control.openapi import problems
from fnplane.shared.models.auth import (
    NCA_ID_PATTERN,
    AccountClientRequest,
    AccountDto,
    CreateAccountRequest,
    UpdateAccountRequest,
)
from fnplane.shared.scopes import ACCOUNT_SETUP

router = APIRouter(prefix="/v2/nvcf/accounts", tags=["accounts"])


def _account(dto: AccountDto) -> JSONResponse:
    return JSONResponse({"account": dto.model_dump(by_alias=True, exclude_none=True, mode="json")})


@router.post("/{nca_id}", summary="Create an account", responses=problems(409))
async def create_account(
    # checked by the service (its 400 names the rule); documented here
    nca_id: Annotated[str, Path(json_schema_extra={"pattern": NCA_ID_PATTERN})],
    body: CreateAccountRequest,
    _: Principal = requires(ACCOUNT_SETUP),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _account(await auth.account_service.create(nca_id, body))


@router.get("", summary="List accounts")
async def list_accounts(
    _: Principal = requires(ACCOUNT_SETUP), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    accounts = await auth.account_service.list()
    return JSONResponse({"cloudAccounts": [a.model_dump(by_alias=True, exclude_none=True) for a in accounts]})


@router.get("/{nca_id}", summary="Get an account")
async def get_account(
    nca_id: str, _: Principal = requires(ACCOUNT_SETUP), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    return _account(await auth.account_service.get(nca_id))


@router.patch("/{nca_id}", summary="Update an account's name or limits")
async def update_account(
    nca_id: str,
    body: UpdateAccountRequest,
    _: Principal = requires(ACCOUNT_SETUP),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _account(await auth.account_service.update(nca_id, body))


@router.patch(
    "/{nca_id}/clients/associate",
    summary="Add a client id (JWT subject) to an account",
    responses=problems(409),
)
async def associate_client(
    nca_id: str,
    body: AccountClientRequest,
    _: Principal = requires(ACCOUNT_SETUP),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _account(await auth.account_service.associate_client(nca_id, body))


@router.patch("/{nca_id}/clients/disassociate", summary="Remove a client id from an account")
async def disassociate_client(
    nca_id: str,
    body: AccountClientRequest,
    caller: Principal = requires(ACCOUNT_SETUP),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _account(await auth.account_service.disassociate_client(caller, nca_id, body))


@router.delete("/{nca_id}", status_code=204, summary="Delete an account without functions")
async def delete_account(
    nca_id: str, caller: Principal = requires(ACCOUNT_SETUP), auth: AuthComponents = Depends(auth_components)
) -> Response:
    await auth.account_service.delete(caller, nca_id)
    return Response(status_code=204)
