"""`/v2/nvcf/deployments/...`: deploy, inspect, update and undeploy function versions (nvcf-api.md 1.2)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.services import deployments as service
from fnplane.shared.models.deployments import (
    CreateDeploymentRequest,
    DeploymentResponse,
    GpuSpecificationResponse,
    LegacyUpdateDeploymentRequest,
    UpdateGpuSpecificationRequest,
)
from fnplane.shared.models.functions import FunctionResponse
from fnplane.shared.scopes import DEPLOY_FUNCTION

router = APIRouter(tags=["deployments"])

VERSION_PATH = "/v2/nvcf/deployments/functions/{functionId}/versions/{functionVersionId}"


@router.post(VERSION_PATH, response_model=DeploymentResponse, response_model_exclude_none=True)
async def create_deployment(
    functionId: str,
    functionVersionId: str,
    body: CreateDeploymentRequest,
    request: Request,
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> DeploymentResponse:
    state = request.app.state
    dto = await service.create_deployment(
        state.engine,
        principal,
        functionId,
        functionVersionId,
        body,
        heartbeat_timeout_s=state.settings.agent_heartbeat_timeout_s,
        notify=state.notify,
    )
    state.reconciler.wake()
    return DeploymentResponse(deployment=dto)


@router.get(VERSION_PATH, response_model=DeploymentResponse, response_model_exclude_none=True)
async def get_deployment(
    functionId: str,
    functionVersionId: str,
    request: Request,
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> DeploymentResponse:
    dto = await service.get_deployment(request.app.state.engine, principal, functionId, functionVersionId)
    return DeploymentResponse(deployment=dto)


@router.get(
    "/v2/nvcf/deployments/{deploymentId}", response_model=DeploymentResponse, response_model_exclude_none=True
)
async def get_deployment_by_id(
    deploymentId: str,
    request: Request,
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> DeploymentResponse:
    return DeploymentResponse(
        deployment=await service.get_deployment_by_id(request.app.state.engine, principal, deploymentId)
    )


@router.put(
    VERSION_PATH, response_model=DeploymentResponse, deprecated=True, response_model_exclude_none=True
)
async def update_deployment(
    functionId: str,
    functionVersionId: str,
    body: LegacyUpdateDeploymentRequest,
    request: Request,
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> DeploymentResponse:
    dto = await service.legacy_update_deployment(
        request.app.state.engine, principal, functionId, functionVersionId, body
    )
    return DeploymentResponse(deployment=dto)


@router.patch(
    "/v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecificationId}",
    response_model=GpuSpecificationResponse,
    response_model_exclude_none=True,
)
async def update_gpu_specification(
    deploymentId: str,
    gpuSpecificationId: str,
    body: UpdateGpuSpecificationRequest,
    request: Request,
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> GpuSpecificationResponse:
    dto = await service.update_gpu_specification(
        request.app.state.engine, principal, deploymentId, gpuSpecificationId, body
    )
    return GpuSpecificationResponse(gpu_specification=dto)


@router.delete(VERSION_PATH, response_model=FunctionResponse, response_model_exclude_none=True)
async def delete_deployment(
    functionId: str,
    functionVersionId: str,
    request: Request,
    graceful: bool = Query(False),
    principal: Principal = requires(DEPLOY_FUNCTION),
) -> FunctionResponse:
    state = request.app.state
    dto = await service.delete_deployment(
        state.engine, principal, functionId, functionVersionId, graceful=graceful, notify=state.notify
    )
    return FunctionResponse(function=dto)
