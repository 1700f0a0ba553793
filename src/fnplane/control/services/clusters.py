"""The cluster inventory: registration (also the agent heartbeat), cluster groups, supported GPUs.

A cluster group is NVCF's `backend`: the clusters registered under one group name. Every account may
deploy on every registered cluster (fnplane is one operator's platform), so `authorizedNcaIds` is
`["*"]`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.clusters import ClusterRow
from fnplane.control.db.repositories.transactions import Database
from fnplane.control.services.notify import WakeReconciler
from fnplane.shared.errors import BadRequestError
from fnplane.shared.models.compute import ClusterRecord, ClusterRegistration, GpuInventory
from fnplane.shared.models.deployments import (
    ClusterDto,
    ClusterGroupDto,
    ClusterGroupGpuDto,
    InstanceTypeDto,
    SupportedGpuDto,
)
from fnplane.shared.scopes import DEFAULT_ACCOUNT

# A fixed namespace so a group's id is the same on every control-plane replica and restart.
_GROUP_NAMESPACE = uuid.UUID("6f1d3c1e-5a52-4f0e-9a8e-0c6bb6d1a001")


def group_id(group_name: str) -> str:
    return str(uuid.uuid5(_GROUP_NAMESPACE, group_name.lower()))


def _record(row: ClusterRow) -> ClusterRecord:
    return ClusterRecord(
        clusterId=row.cluster_id,
        name=row.name,
        group=row.group_name,
        region=row.region,
        inventory=[GpuInventory.model_validate(pool) for pool in row.inventory],
    )


def _check(name: str, registration: ClusterRegistration) -> None:
    if not name.strip():
        raise _invalid("clusterName", "must not be blank")
    if not registration.group.strip():
        raise _invalid("group", "must not be blank")
    gpus = [pool.gpu.lower() for pool in registration.inventory]
    if len(gpus) != len(set(gpus)):
        raise _invalid("inventory", "GPU names must be unique")
    for pool in registration.inventory:
        if not pool.instance_types:
            raise _invalid("inventory", f"GPU {pool.gpu} needs at least one instance type")


def _invalid(field: str, rule: str) -> BadRequestError:
    return BadRequestError(f"Validation failed: field '{field}': {rule}", field=field, rule=rule)


class ClusterService:
    def __init__(self, database: Database, wake_reconciler: WakeReconciler) -> None:
        self._database = database
        self._wake_reconciler = wake_reconciler

    async def register_cluster(
        self,
        name: str,
        registration: ClusterRegistration,
        *,
        nca_id: str = DEFAULT_ACCOUNT,
        now: datetime | None = None,
    ) -> ClusterRecord:
        """Register a cluster or refresh its inventory; either way it counts as a heartbeat."""
        _check(name, registration)
        now = now or now_utc()
        inventory = [pool.model_dump(mode="json", by_alias=True) for pool in registration.inventory]
        async with self._database.transaction() as conn:
            existing = await clusters_repo.by_name(conn, name)
            if existing is None:
                row = ClusterRow(
                    cluster_id=str(uuid.uuid4()),
                    name=name,
                    group_name=registration.group,
                    nca_id=nca_id,
                    region=registration.region,
                    inventory=inventory,
                    last_heartbeat_at=now,
                    created_at=now,
                )
                await clusters_repo.insert_cluster(conn, row)
            else:
                await clusters_repo.update_cluster(
                    conn,
                    existing.cluster_id,
                    group_name=registration.group,
                    region=registration.region,
                    inventory=inventory,
                    last_heartbeat_at=now,
                )
            fresh = await clusters_repo.by_name(conn, name)
        assert fresh is not None
        # a (re-)registered cluster may bring capacity that a waiting deployment needs
        self._wake_reconciler()
        return _record(fresh)

    async def cluster_groups(self) -> list[ClusterGroupDto]:
        async with self._database.reading() as conn:
            rows = await clusters_repo.all_clusters(conn)
        groups: dict[str, list[ClusterRow]] = {}
        for row in rows:
            groups.setdefault(row.group_name, []).append(row)
        out = []
        for name in sorted(groups):
            members = groups[name]
            gpus: dict[str, dict[str, InstanceTypeDto]] = {}
            for row in members:
                for pool in row.inventory:
                    types = gpus.setdefault(pool["gpu"], {})
                    for t in pool.get("instanceTypes", []):
                        types.setdefault(
                            t["name"],
                            InstanceTypeDto(
                                name=t["name"],
                                description=t.get("description", ""),
                                default=bool(t.get("default")),
                            ),
                        )
            out.append(
                ClusterGroupDto(
                    id=group_id(name),
                    name=name,
                    nca_id=members[0].nca_id,
                    authorized_nca_ids=["*"],
                    gpus=[
                        ClusterGroupGpuDto(name=g, instance_types=list(t.values()))
                        for g, t in sorted(gpus.items())
                    ],
                    clusters=[ClusterDto(id=row.cluster_id, name=row.name) for row in members],
                )
            )
        return out

    async def supported_gpus(self) -> list[SupportedGpuDto]:
        async with self._database.reading() as conn:
            rows = await clusters_repo.all_clusters(conn)
        pairs = {(pool["gpu"], row.group_name) for row in rows for pool in row.inventory}
        return [SupportedGpuDto(gpu=gpu, backend=backend) for gpu, backend in sorted(pairs)]
