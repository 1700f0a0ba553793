"""`/v1/keys`: NVCF-API-Keys-compatible key management (snake_case; nvcf-api.md 1.13).

Unlike NVCF's service (which trusts `Key-Owner-Id` headers), every call needs a credential with
scope `manage_keys`; keys live in the caller's account and are owned by the caller's subject.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import auth_components
from fnplane.shared.models.auth import CreateKeyRequest, KeyDto, UpdateKeyAuthorizationsRequest
from fnplane.shared.scopes import MANAGE_KEYS

router = APIRouter(prefix="/v1/keys", tags=["api-keys"])


def _json(dto: KeyDto) -> JSONResponse:
    return JSONResponse(dto.model_dump(exclude_none=True))


@router.post("", summary="Create an API key (the value is shown only in this answer)")
async def create_key(
    body: CreateKeyRequest,
    caller: Principal = requires(MANAGE_KEYS),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _json(await auth.api_keys.create(caller, body))


@router.get("", summary="List the account's API keys (masked values, no authorizations)")
async def list_keys(
    caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    keys = await auth.api_keys.list(caller)
    return JSONResponse({"keys": [k.model_dump(exclude_none=True) for k in keys]})


@router.get("/{key_id}", summary="Get one API key (masked value)")
async def get_key(
    key_id: str, caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> JSONResponse:
    return _json(await auth.api_keys.get(caller, key_id))


@router.delete("/{key_id}", status_code=204, summary="Revoke (delete) an API key")
async def delete_key(
    key_id: str, caller: Principal = requires(MANAGE_KEYS), auth: AuthComponents = Depends(auth_components)
) -> Response:
    await auth.api_keys.delete(caller, key_id)
    return Response(status_code=204)


@router.put("/{key_id}/authorizations", summary="Replace the scopes and resources of an API key")
async def update_key_authorizations(
    key_id: str,
    body: UpdateKeyAuthorizationsRequest,
    caller: Principal = requires(MANAGE_KEYS),
    auth: AuthComponents = Depends(auth_components),
) -> JSONResponse:
    return _json(await auth.api_keys.update_authorizations(caller, key_id, body.authorizations))
