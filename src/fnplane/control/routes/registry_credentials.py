"""`/v2/nvcf/registry-credentials` and `/v2/nvcf/recognized-registries` (nvcf-api.md 1.9)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import registry_credential_service
from fnplane.control.openapi import problems
from fnplane.control.services.registry_credentials import RegistryCredentialService
from fnplane.shared.errors import BadRequestError
from fnplane.shared.models.registry_credentials import (
    ArtifactType,
    CreateRegistryCredentialRequest,
    ProvisionedBy,
    RegistryCredentialDetails,
    UpdateRegistryCredentialRequest,
)
from fnplane.shared.models.wire import parse_enum
from fnplane.shared.scopes import MANAGE_REGISTRY_CREDENTIALS

router = APIRouter(tags=["registry-credentials"])
Service = RegistryCredentialService


def _one(dto: RegistryCredentialDetails) -> JSONResponse:
    return JSONResponse({"registryCredential": dto.model_dump(by_alias=True, exclude_none=True, mode="json")})


def _enums(raw: str | None, enum: type[ArtifactType] | type[ProvisionedBy], field: str) -> list:
    """A comma-separated query of enum values (case-insensitive); None: all."""
    if not raw:
        return []
    try:
        return [parse_enum(enum, part) for part in raw.split(",") if part.strip()]
    except ValueError as error:
        raise BadRequestError(f"{field}: {error}", field=field, rule=str(error)) from None


@router.post(
    "/v2/nvcf/registry-credentials",
    summary="Add a registry credential (the secret is never shown)",
    responses=problems(409),
)
async def create_registry_credential(
    body: CreateRegistryCredentialRequest,
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> JSONResponse:
    return _one(await service.create(caller, body))


@router.get("/v2/nvcf/registry-credentials", summary="The account's registry credentials")
async def list_registry_credentials(
    artifact_type: str | None = Query(None, alias="artifactType"),
    provisioned_by: str | None = Query(None, alias="provisionedBy"),
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> JSONResponse:
    found = await service.list(
        caller,
        _enums(artifact_type, ArtifactType, "artifactType"),
        _enums(provisioned_by, ProvisionedBy, "provisionedBy"),
    )
    items = [dto.model_dump(by_alias=True, exclude_none=True, mode="json") for dto in found]
    return JSONResponse({"registryCredentials": items})


@router.get("/v2/nvcf/registry-credentials/{registryCredentialId}", summary="One registry credential")
async def get_registry_credential(
    registryCredentialId: str,
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> JSONResponse:
    return _one(await service.get(caller, registryCredentialId))


@router.patch(
    "/v2/nvcf/registry-credentials/{registryCredentialId}", summary="New secret, more artifact types"
)
async def update_registry_credential(
    registryCredentialId: str,
    body: UpdateRegistryCredentialRequest,
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> JSONResponse:
    return _one(await service.update(caller, registryCredentialId, body))


@router.delete("/v2/nvcf/registry-credentials/{registryCredentialId}", status_code=204)
async def delete_registry_credential(
    registryCredentialId: str,
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> Response:
    await service.delete(caller, registryCredentialId)
    return Response(status_code=204)


@router.get("/v2/nvcf/recognized-registries", summary="The registries credentials may be added for")
async def recognized_registries(
    caller: Principal = requires(MANAGE_REGISTRY_CREDENTIALS),
    service: Service = Depends(registry_credential_service),
) -> JSONResponse:
    return JSONResponse({"recognizedRegistries": service.recognized_registries()})
