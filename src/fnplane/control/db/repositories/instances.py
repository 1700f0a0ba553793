"""Instance records: the `instances` table (one row per instance ever placed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc, utc_or_none
from fnplane.control.db.repositories.transactions import Connection

INSTANCES = tables.instances
I = INSTANCES  # noqa: E741 - the table, short as in the other repositories

# states that hold GPUs and count as "live" (shared.models.compute.InstanceState values)
LIVE_STATES = ("requested", "starting", "running")
FINAL_STATES = ("failed", "terminated")


@dataclass(frozen=True)
class InstanceRow:
    instance_id: str
    function_id: str
    version_id: str
    deployment_id: str
    gpu_specification_id: str
    nca_id: str
    cluster_id: str
    gpu: str
    instance_type: str
    gpu_count: int
    state: str
    desired: bool
    cause: str | None
    error_log: str | None
    restarts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    terminated_at: datetime | None
    # what a starting instance is doing, as its agent last said (an image pull's progress)
    detail: str | None = None


def _row(row: Any) -> InstanceRow:
    m = dict(row._mapping)
    for key in ("created_at", "updated_at"):
        m[key] = utc(m[key])
    for key in ("started_at", "terminated_at"):
        m[key] = utc_or_none(m[key])
    m["desired"] = bool(m["desired"])
    m["restarts"] = int(m["restarts"] or 0)
    return InstanceRow(**m)


async def insert_instance(conn: Connection, row: InstanceRow) -> None:
    await conn.execute(insert(I).values(**row.__dict__))


async def get(conn: Connection, instance_id: str) -> InstanceRow | None:
    row = (await conn.execute(select(I).where(I.c.instance_id == instance_id))).first()
    return None if row is None else _row(row)


async def of_version(conn: Connection, version_id: str) -> list[InstanceRow]:
    query = select(I).where(I.c.version_id == version_id).order_by(I.c.created_at, I.c.instance_id)
    return [_row(row) for row in (await conn.execute(query)).all()]


async def of_deployment(conn: Connection, deployment_id: str) -> list[InstanceRow]:
    query = select(I).where(I.c.deployment_id == deployment_id).order_by(I.c.created_at, I.c.instance_id)
    return [_row(row) for row in (await conn.execute(query)).all()]


async def live(conn: Connection) -> list[InstanceRow]:
    """Every instance that holds GPUs (requested, starting or running), desired or not."""
    query = select(I).where(I.c.state.in_(LIVE_STATES)).order_by(I.c.created_at, I.c.instance_id)
    return [_row(row) for row in (await conn.execute(query)).all()]


async def live_on_cluster(conn: Connection, cluster_id: str) -> list[InstanceRow]:
    query = (
        select(I)
        .where(and_(I.c.cluster_id == cluster_id, I.c.state.in_(LIVE_STATES)))
        .order_by(I.c.created_at, I.c.instance_id)
    )
    return [_row(row) for row in (await conn.execute(query)).all()]


async def update_instance(conn: Connection, instance_id: str, **values: Any) -> None:
    await conn.execute(update(I).where(I.c.instance_id == instance_id).values(**values))


async def release_version(conn: Connection, version_id: str, now: datetime) -> list[str]:
    """Mark every live instance of the version undesired; the cluster ids that must be told."""
    query = select(I.c.cluster_id).where(
        I.c.version_id == version_id, I.c.state.in_(LIVE_STATES), I.c.desired
    )
    clusters = sorted({row[0] for row in (await conn.execute(query)).all()})
    await conn.execute(
        update(I)
        .where(I.c.version_id == version_id, I.c.state.in_(LIVE_STATES), I.c.desired)
        .values(desired=False, updated_at=now)
    )
    return clusters
