"""The agent-facing API of `shared.models.compute` (scope `cluster-management`).

* `PUT  /v1/fnplane/clusters/{clusterName}`            ClusterRegistration -> ClusterRecord
  (also the heartbeat; wakes the reconciler)
* `GET  /v1/fnplane/clusters/{clusterName}/instances`  -> InstanceAssignments
* `POST /v1/fnplane/instances/{instanceId}/reports`    InstanceReport -> 204, wakes the reconciler
* `POST /v1/fnplane/clusters/{clusterName}/metrics`   WorkerMetrics -> 204, handed to the autoscaler
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.autoscaler import Autoscaler
from fnplane.control.components import autoscaler, cluster_service, instance_service
from fnplane.control.services.clusters import ClusterService
from fnplane.control.services.instances import InstanceService
from fnplane.shared.models.compute import (
    ClusterRecord,
    ClusterRegistration,
    InstanceAssignments,
    InstanceReport,
    WorkerMetrics,
)
from fnplane.shared.scopes import CLUSTER_MANAGEMENT

router = APIRouter(tags=["agents"])


@router.put("/v1/fnplane/clusters/{clusterName}", response_model=ClusterRecord, response_model_by_alias=True)
async def register_cluster(
    clusterName: Annotated[str, Path(max_length=128)],  # what the clusters table holds
    body: ClusterRegistration,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
    clusters: ClusterService = Depends(cluster_service),
) -> ClusterRecord:
    return await clusters.register_cluster(clusterName, body, nca_id=principal.nca_id)


@router.get(
    "/v1/fnplane/clusters/{clusterName}/instances",
    response_model=InstanceAssignments,
    response_model_by_alias=True,
)
async def cluster_instances(
    clusterName: str,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
    instances: InstanceService = Depends(instance_service),
) -> InstanceAssignments:
    return await instances.assignments(clusterName)


@router.post("/v1/fnplane/instances/{instanceId}/reports", status_code=204)
async def report_instance(
    instanceId: str,
    body: InstanceReport,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
    instances: InstanceService = Depends(instance_service),
) -> Response:
    await instances.apply_report(instanceId, body)
    return Response(status_code=204)


@router.post("/v1/fnplane/clusters/{clusterName}/metrics", status_code=204)
async def cluster_metrics(
    clusterName: str,
    body: WorkerMetrics,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
    scaler: Autoscaler = Depends(autoscaler),
) -> Response:
    await scaler.record_metrics(body)
    return Response(status_code=204)
