"""Sharing lists: the `authorized_parties` table (version_id NULL = the function-level list)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select

from fnplane.control.db import tables
from fnplane.control.db.repositories.transactions import Connection

P = tables.authorized_parties


@dataclass(frozen=True)
class Party:
    function_id: str
    version_id: str | None
    nca_id: str
    client_id: str | None


def _party(row: Any) -> Party:
    m = row._mapping
    return Party(m["function_id"], m["version_id"], m["nca_id"], m["client_id"])


def _level(version_id: str | None) -> Any:
    return P.c.version_id.is_(None) if version_id is None else P.c.version_id == version_id


async def parties(conn: Connection, function_id: str, version_id: str | None) -> list[Party]:
    """Exactly one level: the function-level list (version_id None) or one version's own list."""
    query = select(P).where(P.c.function_id == function_id, _level(version_id)).order_by(P.c.id)
    return [_party(row) for row in (await conn.execute(query)).all()]


async def all_parties(conn: Connection, function_id: str) -> list[Party]:
    query = select(P).where(P.c.function_id == function_id).order_by(P.c.id)
    return [_party(row) for row in (await conn.execute(query)).all()]


async def replace(
    conn: Connection, function_id: str, version_id: str | None, entries: list[tuple[str, str | None]]
) -> None:
    await clear(conn, function_id, version_id)
    for nca_id, client_id in entries:
        await add(conn, function_id, version_id, nca_id, client_id)


async def add(
    conn: Connection, function_id: str, version_id: str | None, nca_id: str, client_id: str | None
) -> None:
    await conn.execute(
        insert(P).values(function_id=function_id, version_id=version_id, nca_id=nca_id, client_id=client_id)
    )


async def remove(conn: Connection, function_id: str, version_id: str | None, nca_id: str) -> int:
    result = await conn.execute(
        delete(P).where(P.c.function_id == function_id, _level(version_id), P.c.nca_id == nca_id)
    )
    return int(result.rowcount or 0)


async def clear(conn: Connection, function_id: str, version_id: str | None) -> None:
    await conn.execute(delete(P).where(P.c.function_id == function_id, _level(version_id)))


async def is_public(conn: Connection, function_id: str) -> bool:
    query = select(P.c.id).where(P.c.function_id == function_id, P.c.nca_id == "*").limit(1)
    return (await conn.execute(query)).first() is not None


async def shared_with(conn: Connection, function_id: str, version_id: str, nca_id: str) -> set[str]:
    """The matching party ids ('*' and/or `nca_id`) on the function level or this version's level."""
    query = select(P.c.nca_id).where(
        P.c.function_id == function_id,
        or_(P.c.version_id.is_(None), P.c.version_id == version_id),
        P.c.nca_id.in_([nca_id, "*"]),
    )
    return {row[0] for row in (await conn.execute(query)).all()}
