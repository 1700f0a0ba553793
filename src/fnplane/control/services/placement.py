"""Placement: resolve a GPU specification against the inventory and put instances on clusters.

Validation (nvcf-api.md 1.2, "Deployment validation against the cluster inventory") looks at every
registered cluster; placement only at clusters whose agent sent a heartbeat within
`agent_heartbeat_timeout_s`, and only where `allocated + requested <= capacity` for the GPU pool
(allocated = GPUs of the cluster's requested/starting/running instances, desired or not, since an
instance holds its GPUs until the agent reports it gone). Among the clusters that fit, the one with
the most free GPUs of that pool wins, which spreads a version over clusters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories.clusters import ClusterRow
from fnplane.control.db.repositories.deployments import DeploymentRecord, GpuSpecRecord
from fnplane.control.db.repositories.instances import InstanceRow
from fnplane.control.db.repositories.transactions import Connection
from fnplane.shared.errors import BadRequestError
from fnplane.shared.models.compute import InstanceState
from fnplane.shared.models.deployments import GpuSpecificationRequest


@dataclass(frozen=True)
class ResolvedSpec:
    """A spec with the inventory's own spelling of gpu, instance type and backend."""

    gpu: str
    instance_type: str
    backend: str | None
    gpu_count: int


def _pools(cluster: ClusterRow, gpu: str) -> list[dict]:
    return [pool for pool in cluster.inventory if str(pool["gpu"]).lower() == gpu.lower()]


def _instance_type(pool: dict, name: str) -> dict | None:
    types = pool.get("instanceTypes", [])
    if not name.strip():
        return next((t for t in types if t.get("default")), types[0] if types else None)
    return next((t for t in types if str(t["name"]).lower() == name.strip().lower()), None)


def resolve(clusters: list[ClusterRow], spec: GpuSpecificationRequest, *, at: str) -> ResolvedSpec:
    """Check gpu / instanceType / backend / clusters against the inventory; 400 naming the field, within
    the body at `at` (`deploymentSpecifications.0`)."""
    if not clusters:
        raise BadRequestError("No cluster groups are available: register a cluster (start an agent) first")
    candidates = clusters
    backend = None
    if spec.backend:
        candidates = [c for c in clusters if c.group_name.lower() == spec.backend.strip().lower()]
        if not candidates:
            groups = ", ".join(sorted({c.group_name for c in clusters}))
            raise BadRequestError(
                f"Validation failed: field '{at}.backend': unknown cluster group '{spec.backend}' "
                f"(known: {groups})",
                field=f"{at}.backend",
                rule="must name a cluster group",
            )
        backend = candidates[0].group_name
    if spec.clusters:
        wanted = {name.lower() for name in spec.clusters}
        candidates = [c for c in clusters if c.name.lower() in wanted]
        missing = wanted - {c.name.lower() for c in candidates}
        if missing:
            raise BadRequestError(
                f"Validation failed: field '{at}.clusters': unknown cluster(s) {', '.join(sorted(missing))}",
                field=f"{at}.clusters",
                rule="must name registered clusters",
            )
    if spec.regions:
        # checked here, not only by the placement of minInstances: a spec of min 0 no cluster can ever
        # take would be ACTIVE, and every call to it would wait out its window for an instance
        wanted = {region.lower() for region in spec.regions}
        candidates = [c for c in candidates if c.region.lower() in wanted]
        if not candidates:
            known = ", ".join(sorted({c.region for c in clusters}))
            raise BadRequestError(
                f"Validation failed: field '{at}.regions': no registered cluster is in region(s) "
                f"{', '.join(spec.regions)} (known: {known})",
                field=f"{at}.regions",
                rule="must name regions of registered clusters",
            )
    with_gpu = [(c, pool) for c in candidates for pool in _pools(c, spec.gpu)]
    if not with_gpu:
        raise BadRequestError(
            f"Validation failed: field '{at}.gpu': GPU '{spec.gpu}' is not available"
            + (f" in cluster group '{backend}'" if backend else ""),
            field=f"{at}.gpu",
            rule="must be a GPU of the registered clusters",
        )
    for _, pool in with_gpu:
        instance_type = _instance_type(pool, spec.instance_type)
        if instance_type is not None:
            return ResolvedSpec(
                gpu=str(pool["gpu"]),
                instance_type=str(instance_type["name"]),
                backend=backend,
                gpu_count=int(instance_type.get("gpuCount", 1)),
            )
    raise BadRequestError(
        f"Validation failed: field '{at}.instanceType': instance type '{spec.instance_type}' is not "
        f"available for GPU '{spec.gpu}'",
        field=f"{at}.instanceType",
        rule="must be an instance type of that GPU",
    )


def no_capacity(gpu: str, instance_type: str, *, field: str) -> BadRequestError:
    """`field`: the `minInstances` that asked for more than fits."""
    # NVCF/ICMS wording (compute.md 1.7)
    return BadRequestError(
        f"There are no available clusters with capacity for {gpu} GPU or {instance_type} instance type",
        field=field,
        rule="at most as many instances as the registered clusters have free GPUs for",
    )


@dataclass
class _Slot:
    cluster: ClusterRow
    capacity: int
    allocated: int
    gpu_count: int


async def place(
    conn: Connection,
    *,
    deployment: DeploymentRecord,
    spec: GpuSpecRecord,
    count: int,
    now: datetime,
    heartbeat_timeout_s: float,
) -> list[InstanceRow]:
    """Place up to `count` new instances of the deployment's `spec`; fewer (maybe none) when capacity
    runs out."""
    if count <= 0:
        return []
    cutoff = now - timedelta(seconds=heartbeat_timeout_s)
    clusters = await clusters_repo.all_clusters(conn, for_update=True)
    slots: list[_Slot] = []
    for cluster in clusters:
        if cluster.last_heartbeat_at is None or cluster.last_heartbeat_at < cutoff:
            continue
        if spec.backend and cluster.group_name.lower() != spec.backend.lower():
            continue
        if spec.clusters and cluster.name.lower() not in {c.lower() for c in spec.clusters}:
            continue
        if spec.regions and cluster.region.lower() not in {r.lower() for r in spec.regions}:
            continue
        for pool in _pools(cluster, spec.gpu):
            instance_type = _instance_type(pool, spec.instance_type)
            if instance_type is None:
                continue
            live = await instances_repo.live_on_cluster(conn, cluster.cluster_id)
            allocated = sum(i.gpu_count for i in live if i.gpu.lower() == spec.gpu.lower())
            slots.append(
                _Slot(cluster, int(pool["capacity"]), allocated, int(instance_type.get("gpuCount", 1)))
            )
            break
    placed: list[InstanceRow] = []
    for _ in range(count):
        fitting = [s for s in slots if s.allocated + s.gpu_count <= s.capacity]
        if not fitting:
            break
        slot = max(fitting, key=lambda s: (s.capacity - s.allocated, s.cluster.name))
        slot.allocated += slot.gpu_count
        row = InstanceRow(
            instance_id=str(uuid.uuid4()),
            function_id=deployment.function_id,
            version_id=deployment.version_id,
            deployment_id=spec.deployment_id,
            gpu_specification_id=spec.gpu_specification_id,
            nca_id=deployment.nca_id,
            cluster_id=slot.cluster.cluster_id,
            gpu=spec.gpu,
            instance_type=spec.instance_type,
            gpu_count=slot.gpu_count,
            state=InstanceState.REQUESTED.value,
            desired=True,
            cause=None,
            error_log=None,
            restarts=0,
            created_at=now,
            updated_at=now,
            started_at=None,
            terminated_at=None,
        )
        await instances_repo.insert_instance(conn, row)
        placed.append(row)
    return placed
