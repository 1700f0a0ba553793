"""`/v2/nvcf/secrets/...`: update the secrets of a function version or a telemetry (nvcf-api.md 1.7)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import secret_service, telemetry_service
from fnplane.control.services.secrets import SecretService
from fnplane.control.services.telemetries import TelemetryService
from fnplane.shared.models.functions import UpdateSecretsRequest
from fnplane.shared.models.telemetries import UpdateTelemetrySecretRequest
from fnplane.shared.scopes import UPDATE_SECRETS

router = APIRouter(tags=["secrets"])


@router.put("/v2/nvcf/secrets/functions/{functionId}/versions/{versionId}", status_code=204)
async def update_function_secrets(
    functionId: str,
    versionId: str,
    body: UpdateSecretsRequest,
    principal: Principal = requires(UPDATE_SECRETS),
    secrets: SecretService = Depends(secret_service),
) -> Response:
    await secrets.update_secrets(principal, functionId, versionId, body)
    return Response(status_code=204)


@router.put("/v2/nvcf/secrets/telemetries/{telemetryId}", status_code=204)
async def update_telemetry_secret(
    telemetryId: str,
    body: UpdateTelemetrySecretRequest,
    principal: Principal = requires(UPDATE_SECRETS),
    telemetries: TelemetryService = Depends(telemetry_service),
) -> Response:
    await telemetries.update_secret(principal, telemetryId, body)
    return Response(status_code=204)
