"""Deployments and their GPU specifications: the `deployments` and `gpu_specifications` tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc
from fnplane.control.db.repositories.transactions import Connection

D = tables.deployments
G = tables.gpu_specifications


@dataclass(frozen=True)
class DeploymentRecord:
    deployment_id: str
    function_id: str
    version_id: str
    nca_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class GpuSpecRecord:
    gpu_specification_id: str
    deployment_id: str
    gpu: str
    instance_type: str
    backend: str | None
    min_instances: int
    max_instances: int
    max_request_concurrency: int
    target_instances: int
    clusters: list[str] | None
    regions: list[str] | None
    attributes: list[str] | None
    availability_zones: list[str] | None
    configuration: dict[str, Any] | None
    autoscaling_configuration: dict[str, Any] | None
    preferred_order: int


def _deployment(row: Any) -> DeploymentRecord:
    m = dict(row._mapping)
    return DeploymentRecord(
        m["deployment_id"],
        m["function_id"],
        m["version_id"],
        m["nca_id"],
        utc(m["created_at"]),
        utc(m["updated_at"]),
    )


def _spec(row: Any) -> GpuSpecRecord:
    return GpuSpecRecord(**dict(row._mapping))


async def insert_deployment(conn: Connection, record: DeploymentRecord) -> None:
    await conn.execute(insert(D).values(**record.__dict__))


async def insert_spec(conn: Connection, record: GpuSpecRecord) -> None:
    await conn.execute(insert(G).values(**record.__dict__))


async def by_version(conn: Connection, version_id: str) -> DeploymentRecord | None:
    row = (await conn.execute(select(D).where(D.c.version_id == version_id))).first()
    return None if row is None else _deployment(row)


async def by_id(conn: Connection, deployment_id: str, *, for_update: bool = False) -> DeploymentRecord | None:
    """`for_update`: the row stays locked until the transaction ends (PostgreSQL; SQLite has one writer),
    so an undeploy that deletes it waits for the transaction, or the transaction for the undeploy."""
    query = select(D).where(D.c.deployment_id == deployment_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    return None if row is None else _deployment(row)


async def all_deployments(conn: Connection) -> list[DeploymentRecord]:
    return [_deployment(row) for row in (await conn.execute(select(D))).all()]


async def specs_of(conn: Connection, deployment_id: str) -> list[GpuSpecRecord]:
    query = (
        select(G)
        .where(G.c.deployment_id == deployment_id)
        .order_by(G.c.preferred_order, G.c.gpu_specification_id)
    )
    return [_spec(row) for row in (await conn.execute(query)).all()]


async def spec_by_id(conn: Connection, gpu_specification_id: str) -> GpuSpecRecord | None:
    row = (await conn.execute(select(G).where(G.c.gpu_specification_id == gpu_specification_id))).first()
    return None if row is None else _spec(row)


async def update_spec(conn: Connection, gpu_specification_id: str, **values: Any) -> None:
    await conn.execute(update(G).where(G.c.gpu_specification_id == gpu_specification_id).values(**values))


async def touch(conn: Connection, deployment_id: str, now: datetime) -> None:
    await conn.execute(update(D).where(D.c.deployment_id == deployment_id).values(updated_at=now))


async def delete_deployment(conn: Connection, deployment_id: str) -> None:
    # explicit: SQLite enforces ON DELETE CASCADE only with the foreign_keys pragma
    await conn.execute(delete(G).where(G.c.deployment_id == deployment_id))
    await conn.execute(delete(D).where(D.c.deployment_id == deployment_id))
