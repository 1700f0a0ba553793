"""`/v2/nvcf/service-accounts` (fnplane extension): OAuth2 clients of the caller's account.

* `POST   /v2/nvcf/service-accounts` {clientId?, name?, scopes[]} -> 200 {"serviceAccount"} with clientSecret
* `GET    /v2/nvcf/service-accounts` -> {"serviceAccounts": [...]}
* `GET    /v2/nvcf/service-accounts/{clientId}` -> {"serviceAccount": {...}}
* `POST   /v2/nvcf/service-accounts/{clientId}/rotate-secret` -> 200 with the new clientSecret
* `DELETE /v2/nvcf/service-accounts/{clientId}` -> 204

Scope `manage_keys`; `scopes` must be a subset of the caller's (403 otherwise).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from fnplane.control.auth.api_keys import wire_time
from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import auth_components
from fnplane.control.db.repositories.clients import ClientRecord
from fnplane.control.openapi import problems
from fnplane.shared.models.auth import CreateServiceAccountRequest, ServiceAccountDto
from fnplane.shared.scopes import MANAGE_KEYS

router = APIRouter(prefix="/v2/nvcf/service-accounts", tags=["service-accounts"])


def _dto(record: ClientRecord, secret: str | None = None) -> dict[str, object]:
    dto = ServiceAccountDto(
        client_id=record.client_id,
        nca_id=record.nca_id,
        name=record.name,
        scopes=sorted(record.allowed_scopes),
        created_at=wire_time(record.created_at),
        secret_rotated_at=wire_time(record.rotated_at) if record.rotated_at else None,
        client_secret=secret,
    )
    return dto.model_dump(by_alias=True, exclude_none=True)


@router.post(
    "", summary="Create a service account (the secret is shown only in this answer)", responses=problems(409)
)
async def create_service_account(
    body: CreateServiceAccountRequest,
    caller: Principal = requires(MANAGE_KEYS),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    record, secret = await auth.service_accounts.create(caller, body.client_id, body.name, body.scopes)
    return JSONResponse({"serviceAccount": _dto(record, secret)})


@router.get("", summary="List the account's service accounts")
async def list_service_accounts(
    caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    records = await auth.service_accounts.list_for(caller)
    return JSONResponse({"serviceAccounts": [_dto(r) for r in records]})


@router.get("/{client_id}", summary="Get one service account")
async def get_service_account(
    client_id: str, caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    return JSONResponse({"serviceAccount": _dto(await auth.service_accounts.get(caller, client_id))})


@router.post("/{client_id}/rotate-secret", summary="Replace the secret (the old one stops working at once)")
async def rotate_service_account_secret(
    client_id: str, caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    record, secret = await auth.service_accounts.rotate(caller, client_id)
    return JSONResponse({"serviceAccount": _dto(record, secret)})


@router.delete("/{client_id}", status_code=204, summary="Delete a service account")
async def delete_service_account(
    client_id: str, caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> Response:
    await auth.service_accounts.delete(caller, client_id)
    return Response(status_code=204)
