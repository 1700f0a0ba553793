"""JWT signing keys: `SigningKeyRepository` (persisted so tokens survive a restart)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    private_key_pem: str
    active: bool
    created_at: datetime


class SigningKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self) -> list[SigningKeyRecord]:
        async with self._engine.connect() as conn:
            query = select(tables.signing_keys).order_by(tables.signing_keys.c.created_at)
            rows = (await conn.execute(query)).all()
        return [SigningKeyRecord(r.kid, r.private_key_pem, bool(r.active), utc(r.created_at)) for r in rows]

    async def insert(self, record: SigningKeyRecord) -> bool:
        """False if a key with this kid exists already (two processes raced to create one)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(tables.signing_keys).values(**asdict(record)))
        except IntegrityError:
            return False
        return True
