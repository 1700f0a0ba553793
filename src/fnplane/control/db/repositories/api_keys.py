"""API keys: `ApiKeyRepository` (only the keyed hash of a key is ever stored)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    key_hash: str
    hint: str
    nca_id: str
    owner_id: str
    description: str
    authorizations: dict[str, Any]
    status: str  # stored status: ACTIVE or SUSPENDED (EXPIRED is derived from expires_at)
    created_at: datetime
    expires_at: datetime


def _record(row: object) -> ApiKeyRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKeyRecord(
        key_id=m["key_id"],
        key_hash=m["key_hash"],
        hint=m["hint"],
        nca_id=m["nca_id"],
        owner_id=m["owner_id"],
        description=m["description"],
        authorizations=m["authorizations"],
        status=m["status"],
        created_at=utc(m["created_at"]),
        expires_at=utc(m["expires_at"]),
    )


class ApiKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, record: ApiKeyRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(tables.api_keys).values(**asdict(record)))

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        async with self._engine.connect() as conn:
            query = select(tables.api_keys).where(tables.api_keys.c.key_hash == key_hash)
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def get(self, nca_id: str, key_id: str) -> ApiKeyRecord | None:
        async with self._engine.connect() as conn:
            query = select(tables.api_keys).where(
                tables.api_keys.c.key_id == key_id, tables.api_keys.c.nca_id == nca_id
            )
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list(self, nca_id: str) -> list[ApiKeyRecord]:
        async with self._engine.connect() as conn:
            query = (
                select(tables.api_keys)
                .where(tables.api_keys.c.nca_id == nca_id)
                .order_by(tables.api_keys.c.created_at, tables.api_keys.c.key_id)
            )
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def count_for_owner(self, nca_id: str, owner_id: str) -> int:
        async with self._engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(tables.api_keys)
                .where(tables.api_keys.c.nca_id == nca_id, tables.api_keys.c.owner_id == owner_id)
            )
            return int((await conn.execute(query)).scalar_one())

    async def set_authorizations(self, nca_id: str, key_id: str, authorizations: dict[str, Any]) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(tables.api_keys)
                .where(tables.api_keys.c.key_id == key_id, tables.api_keys.c.nca_id == nca_id)
                .values(authorizations=authorizations)
            )
        return bool(result.rowcount)

    async def delete(self, nca_id: str, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(tables.api_keys).where(
                    tables.api_keys.c.key_id == key_id, tables.api_keys.c.nca_id == nca_id
                )
            )
        return bool(result.rowcount)
