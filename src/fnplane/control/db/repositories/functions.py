"""Functions and their versions: the `functions` and `function_versions` tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc
from fnplane.control.db.repositories.transactions import Connection

V = tables.function_versions


@dataclass(frozen=True)
class VersionRecord:
    version_id: str
    function_id: str
    nca_id: str
    name: str
    status: str
    description: str
    inference_url: str
    inference_port: int | None
    container_image: str | None
    container_args: str | None
    container_environment: list[dict[str, str]] | None
    health: dict[str, Any]
    models: list[dict[str, Any]] | None
    resources: list[dict[str, Any]] | None
    helm_chart: str | None
    helm_chart_service_name: str | None
    api_body_format: str
    function_type: str
    tags: list[str] | None
    rate_limit: dict[str, Any] | None
    # [{"name": ..., "value": ...}]: values never leave the control plane except to the agent
    secrets: list[dict[str, str]] | None
    llm_invocation_config: dict[str, Any] | None
    telemetries: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


def _record(row: Any) -> VersionRecord:
    m = dict(row._mapping)
    m["created_at"] = utc(m["created_at"])
    m["updated_at"] = utc(m["updated_at"])
    return VersionRecord(**m)


async def insert_function(conn: Connection, function_id: str, nca_id: str, name: str, now: datetime) -> None:
    await conn.execute(
        insert(tables.functions).values(function_id=function_id, nca_id=nca_id, name=name, created_at=now)
    )


async def function_owner(conn: Connection, function_id: str) -> str | None:
    query = select(tables.functions.c.nca_id).where(tables.functions.c.function_id == function_id)
    return (await conn.execute(query)).scalar_one_or_none()


async def count_functions(conn: Connection, nca_id: str) -> int:
    query = select(func.count()).select_from(tables.functions).where(tables.functions.c.nca_id == nca_id)
    return int((await conn.execute(query)).scalar_one())


async def insert_version(conn: Connection, values: dict[str, Any]) -> None:
    await conn.execute(insert(V).values(**values))


async def get_version(conn: Connection, version_id: str) -> VersionRecord | None:
    row = (await conn.execute(select(V).where(V.c.version_id == version_id))).first()
    return None if row is None else _record(row)


async def versions_of(conn: Connection, function_id: str) -> list[VersionRecord]:
    query = select(V).where(V.c.function_id == function_id).order_by(V.c.created_at, V.c.version_id)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def versions_visible_to(conn: Connection, nca_id: str) -> list[VersionRecord]:
    """Versions the account owns, or that are shared with it or with everyone ('*'), at any level."""
    parties = tables.authorized_parties
    shared = (
        select(parties.c.function_id, parties.c.version_id)
        .where(parties.c.nca_id.in_([nca_id, "*"]))
        .subquery()
    )
    query = (
        select(V)
        .where(
            or_(
                V.c.nca_id == nca_id,
                V.c.function_id.in_(select(shared.c.function_id).where(shared.c.version_id.is_(None))),
                V.c.version_id.in_(select(shared.c.version_id).where(shared.c.version_id.is_not(None))),
            )
        )
        .order_by(V.c.created_at, V.c.version_id)
    )
    return [_record(row) for row in (await conn.execute(query)).all()]


async def versions_with_status(conn: Connection, statuses: list[str]) -> list[VersionRecord]:
    query = select(V).where(V.c.status.in_(statuses))
    return [_record(row) for row in (await conn.execute(query)).all()]


async def update_version(conn: Connection, version_id: str, **values: Any) -> None:
    await conn.execute(update(V).where(V.c.version_id == version_id).values(**values))


async def set_status(conn: Connection, version_id: str, status: str, now: datetime) -> None:
    await conn.execute(update(V).where(V.c.version_id == version_id).values(status=status, updated_at=now))


async def delete_version(conn: Connection, function_id: str, version_id: str) -> None:
    """Delete the version, its version-level sharing and, with its last version, the function."""
    parties = tables.authorized_parties
    await conn.execute(delete(parties).where(parties.c.version_id == version_id))
    await conn.execute(delete(V).where(V.c.version_id == version_id))
    left = (
        await conn.execute(select(func.count()).select_from(V).where(V.c.function_id == function_id))
    ).scalar_one()
    if int(left) == 0:
        await conn.execute(delete(parties).where(parties.c.function_id == function_id))
        await conn.execute(delete(tables.functions).where(tables.functions.c.function_id == function_id))
