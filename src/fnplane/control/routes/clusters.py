"""`GET /v2/nvcf/clusterGroups` and `GET /v2/nvcf/supportedGpus` from the registered inventory (1.11).

Unlike NVCF (JWT only), API keys with the scope are accepted too; supportedGpus lists the GPUs the
registered clusters really offer instead of NVCF's static legacy table.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.components import cluster_service
from fnplane.control.services.clusters import ClusterService
from fnplane.shared.models.deployments import ClusterGroupsResponse, SupportedGpuDto
from fnplane.shared.scopes import LIST_CLUSTER_GROUPS, REGISTER_FUNCTION

router = APIRouter(tags=["clusters"])


@router.get("/v2/nvcf/clusterGroups", response_model=ClusterGroupsResponse, response_model_exclude_none=True)
async def cluster_groups(
    principal: Principal = requires(LIST_CLUSTER_GROUPS), clusters: ClusterService = Depends(cluster_service)
) -> ClusterGroupsResponse:
    return ClusterGroupsResponse(cluster_groups=await clusters.cluster_groups())


@router.get("/v2/nvcf/supportedGpus", response_model=list[SupportedGpuDto], response_model_exclude_none=True)
async def supported_gpus(
    principal: Principal = requires(REGISTER_FUNCTION), clusters: ClusterService = Depends(cluster_service)
) -> list[SupportedGpuDto]:
    return await clusters.supported_gpus()
