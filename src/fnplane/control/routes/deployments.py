"""`/v2/nvcf/deployments/...`: deploy, inspect, update and undeploy function versions (nvcf-api.md 1.2)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import deployment_service
from fnplane.control.services.deployments import DeploymentService
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
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> DeploymentResponse:
    dto = await deployments.create_deployment(principal, functionId, functionVersionId, body)
    return DeploymentResponse(deployment=dto)


@router.get(VERSION_PATH, response_model=DeploymentResponse, response_model_exclude_none=True)
async def get_deployment(
    functionId: str,
    functionVersionId: str,
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> DeploymentResponse:
    dto = await deployments.get_deployment(principal, functionId, functionVersionId)
    return DeploymentResponse(deployment=dto)


@router.get(
    "/v2/nvcf/deployments/{deploymentId}", response_model=DeploymentResponse, response_model_exclude_none=True
)
async def get_deployment_by_id(
    deploymentId: str,
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> DeploymentResponse:
    return DeploymentResponse(deployment=await deployments.get_deployment_by_id(principal, deploymentId))


@router.put(
    VERSION_PATH, response_model=DeploymentResponse, deprecated=True, response_model_exclude_none=True
)
async def update_deployment(
    functionId: str,
    functionVersionId: str,
    body: LegacyUpdateDeploymentRequest,
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> DeploymentResponse:
    dto = await deployments.legacy_update_deployment(principal, functionId, functionVersionId, body)
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
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> GpuSpecificationResponse:
    dto = await deployments.update_gpu_specification(principal, deploymentId, gpuSpecificationId, body)
    return GpuSpecificationResponse(gpu_specification=dto)


@router.delete(VERSION_PATH, response_model=FunctionResponse, response_model_exclude_none=True)
async def delete_deployment(
    functionId: str,
    functionVersionId: str,
    graceful: bool = Query(False),
    principal: Principal = requires(DEPLOY_FUNCTION),
    deployments: DeploymentService = Depends(deployment_service),
) -> FunctionResponse:
    dto = await deployments.delete_deployment(principal, functionId, functionVersionId, graceful=graceful)
    return FunctionResponse(function=dto)
