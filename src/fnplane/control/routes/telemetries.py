"""`/v2/nvcf/telemetries` (nvcf-api.md 1.10); the secret's update is in `routes.secrets`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import telemetry_service
from fnplane.control.services.telemetries import TelemetryService
from fnplane.shared.models.telemetries import (
    CreateTelemetryRequest,
    TelemetriesResponse,
    TelemetryResponse,
)
from fnplane.shared.scopes import MANAGE_TELEMETRIES

router = APIRouter(tags=["telemetries"])


@router.post(
    "/v2/nvcf/telemetries",
    summary="Add a telemetry endpoint (the secret is never shown)",
    response_model=TelemetryResponse,
    response_model_exclude_none=True,
)
async def create_telemetry(
    body: CreateTelemetryRequest,
    caller: Principal = requires(MANAGE_TELEMETRIES),
    service: TelemetryService = Depends(telemetry_service),
) -> TelemetryResponse:
    return TelemetryResponse(telemetry=await service.create(caller, body))


@router.get(
    "/v2/nvcf/telemetries",
    summary="The account's telemetries",
    response_model=TelemetriesResponse,
    response_model_exclude_none=True,
)
async def list_telemetries(
    caller: Principal = requires(MANAGE_TELEMETRIES),
    service: TelemetryService = Depends(telemetry_service),
) -> TelemetriesResponse:
    return TelemetriesResponse(telemetries=await service.list(caller))


@router.get(
    "/v2/nvcf/telemetries/{telemetryId}",
    summary="One telemetry",
    response_model=TelemetryResponse,
    response_model_exclude_none=True,
)
async def get_telemetry(
    telemetryId: str,
    caller: Principal = requires(MANAGE_TELEMETRIES),
    service: TelemetryService = Depends(telemetry_service),
) -> TelemetryResponse:
    return TelemetryResponse(telemetry=await service.get(caller, telemetryId))


@router.delete(
    "/v2/nvcf/telemetries/{telemetryId}",
    status_code=204,
    summary="Delete a telemetry no function version names (400 otherwise)",
)
async def delete_telemetry(
    telemetryId: str,
    caller: Principal = requires(MANAGE_TELEMETRIES),
    service: TelemetryService = Depends(telemetry_service),
) -> Response:
    await service.delete(caller, telemetryId)
    return Response(status_code=204)
