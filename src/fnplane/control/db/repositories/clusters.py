"""Registered clusters and their GPU inventory: the `clusters` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc, utc_or_none
from fnplane.control.db.repositories.transactions import Connection, is_postgres

C = tables.clusters


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: str
    name: str
    group_name: str
    nca_id: str
    region: str
    # [{"gpu", "capacity", "instanceTypes": [{"name", "description", "default", "gpuCount"}]}]
    inventory: list[dict[str, Any]]
    last_heartbeat_at: datetime | None
    created_at: datetime


def _row(row: Any) -> ClusterRow:
    m = dict(row._mapping)
    m["last_heartbeat_at"] = utc_or_none(m["last_heartbeat_at"])
    m["created_at"] = utc(m["created_at"])
    return ClusterRow(**m)


async def by_name(conn: Connection, name: str) -> ClusterRow | None:
    row = (await conn.execute(select(C).where(C.c.name == name))).first()
    return None if row is None else _row(row)


async def all_clusters(conn: Connection, *, for_update: bool = False) -> list[ClusterRow]:
    """Every cluster; `for_update` locks the rows on PostgreSQL so placements do not overbook."""
    query = select(C).order_by(C.c.name)
    if for_update and is_postgres(conn):
        query = query.with_for_update()
    return [_row(row) for row in (await conn.execute(query)).all()]


async def insert_cluster(conn: Connection, row: ClusterRow) -> None:
    await conn.execute(insert(C).values(**row.__dict__))


async def update_cluster(conn: Connection, cluster_id: str, **values: Any) -> None:
    await conn.execute(update(C).where(C.c.cluster_id == cluster_id).values(**values))
