"""`/v2/nvcf/clients/{clientId}`: which account a client id belongs to (scope `account_setup`;
nvcf-api.md 1.12). Clients are added and removed through `/v2/nvcf/accounts/{ncaId}/clients/...`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fnplane.control.auth.components import AuthComponents
from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import auth_components
from fnplane.shared.models.auth import ClientResponse
from fnplane.shared.scopes import ACCOUNT_SETUP

router = APIRouter(prefix="/v2/nvcf/clients", tags=["accounts"])


@router.get(
    "/{clientId}", response_model=ClientResponse, response_model_exclude_none=True, summary="Get a client"
)
async def get_client(
    clientId: str, _: Principal = requires(ACCOUNT_SETUP), auth: AuthComponents = Depends(auth_components)
) -> ClientResponse:
    return ClientResponse(client=await auth.account_service.get_client(clientId))
