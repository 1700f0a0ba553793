"""The agent-facing API of `shared.models.compute` (scope `cluster-management`).

* `PUT  /v1/fnplane/clusters/{clusterName}`            ClusterRegistration -> ClusterRecord
  (also the heartbeat)
* `GET  /v1/fnplane/clusters/{clusterName}/instances`  -> InstanceAssignments
* `POST /v1/fnplane/instances/{instanceId}/reports`    InstanceReport -> 204, wakes the reconciler
* `POST /v1/fnplane/clusters/{clusterName}/metrics`   WorkerMetrics -> 204, handed to `app.state.metrics_sink`
  (an async callable `(cluster_name, WorkerMetrics)`, set by the autoscaler; dropped when unset)
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from fnplane.control.auth.dependencies import requires
from fnplane.control.auth.principal import Principal
from fnplane.control.services import clusters as clusters_service
from fnplane.control.services import instances as instances_service
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
    clusterName: str,
    body: ClusterRegistration,
    request: Request,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
) -> ClusterRecord:
    record = await clusters_service.register_cluster(
        request.app.state.engine, clusterName, body, nca_id=principal.nca_id
    )
    # a (re-)registered cluster may bring capacity that a waiting deployment needs
    request.app.state.reconciler.wake()
    return record


@router.get(
    "/v1/fnplane/clusters/{clusterName}/instances",
    response_model=InstanceAssignments,
    response_model_by_alias=True,
)
async def cluster_instances(
    clusterName: str,
    request: Request,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
) -> InstanceAssignments:
    state = request.app.state
    return await instances_service.assignments(state.engine, clusterName, state.secret_box)


@router.post("/v1/fnplane/instances/{instanceId}/reports", status_code=204)
async def report_instance(
    instanceId: str,
    body: InstanceReport,
    request: Request,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
) -> Response:
    await instances_service.apply_report(request.app.state.engine, instanceId, body)
    request.app.state.reconciler.wake()
    return Response(status_code=204)


@router.post("/v1/fnplane/clusters/{clusterName}/metrics", status_code=204)
async def cluster_metrics(
    clusterName: str,
    body: WorkerMetrics,
    request: Request,
    principal: Principal = requires(CLUSTER_MANAGEMENT),
) -> Response:
    sink = getattr(request.app.state, "metrics_sink", None)
    if sink is not None:
        await sink(clusterName, body)
    return Response(status_code=204)
