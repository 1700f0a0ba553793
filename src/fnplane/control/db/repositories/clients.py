"""Clients (JWT subjects) and service accounts: `ClientRepository`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc, utc_or_none
from fnplane.shared.errors import ConflictError


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    nca_id: str
    name: str
    secret_hash: str | None
    allowed_scopes: list[str]
    created_at: datetime
    rotated_at: datetime | None

    @property
    def epoch_us(self) -> int:
        """When the client's current secret began (creation or last rotation), in whole microseconds
        since 1970: the `clientEpoch` claim of every token minted for it (auth/signing.py)."""
        began = self.rotated_at or self.created_at
        return (began - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _record(row: object) -> ClientRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return ClientRecord(
        client_id=m["client_id"],
        nca_id=m["nca_id"],
        name=m["name"],
        secret_hash=m["secret_hash"],
        allowed_scopes=list(m["allowed_scopes"]),
        created_at=utc(m["created_at"]),
        rotated_at=utc_or_none(m["rotated_at"]),
    )


class ClientRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, record: ClientRecord) -> None:
        """ConflictError if the client id is taken (client ids are global, like NVCF's)."""
        try:
            async with self._engine.begin() as conn:
                row = {**asdict(record), "allowed_scopes": sorted(record.allowed_scopes)}
                await conn.execute(insert(tables.clients).values(**row))
        except IntegrityError as error:
            raise ConflictError(f"Client '{record.client_id}' already exists") from error

    async def get(self, client_id: str) -> ClientRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(tables.clients).where(tables.clients.c.client_id == client_id))
            ).first()
        return None if row is None else _record(row)

    async def list(self, nca_id: str) -> list[ClientRecord]:
        async with self._engine.connect() as conn:
            query = (
                select(tables.clients)
                .where(tables.clients.c.nca_id == nca_id)
                .order_by(tables.clients.c.created_at, tables.clients.c.client_id)
            )
            rows = (await conn.execute(query)).all()
        return [_record(row) for row in rows]

    async def set_secret(self, client_id: str, secret_hash: str, rotated_at: datetime) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(tables.clients)
                .where(tables.clients.c.client_id == client_id)
                .values(secret_hash=secret_hash, rotated_at=rotated_at)
            )
        return bool(result.rowcount)

    async def delete(self, client_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(tables.clients).where(tables.clients.c.client_id == client_id))
        return bool(result.rowcount)
