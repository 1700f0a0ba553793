"""Accounts (tenants): `AccountRepository`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fnplane.control.db import tables
from fnplane.control.db.repositories import registry_credentials as registry_credentials_repo
from fnplane.control.db.repositories import telemetries as telemetries_repo
from fnplane.control.db.repositories._time import now_utc, utc
from fnplane.control.db.repositories.registry_credentials import RegistryCredentialRecord
from fnplane.control.db.repositories.telemetries import TelemetryRecord
from fnplane.shared.errors import ConflictError


@dataclass(frozen=True)
class AccountRecord:
    nca_id: str
    name: str
    max_functions_allowed: int
    created_at: datetime
    updated_at: datetime
    max_tasks_allowed: int = 50
    max_telemetries_allowed: int = 25
    max_registry_credentials_allowed: int = 25


def _record(row: object) -> AccountRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return AccountRecord(
        nca_id=m["nca_id"],
        name=m["name"],
        max_functions_allowed=m["max_functions_allowed"],
        created_at=utc(m["created_at"]),
        updated_at=utc(m["updated_at"]),
        max_tasks_allowed=m["max_tasks_allowed"],
        max_telemetries_allowed=m["max_telemetries_allowed"],
        max_registry_credentials_allowed=m["max_registry_credentials_allowed"],
    )


class AccountRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, nca_id: str) -> AccountRecord | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(tables.accounts).where(tables.accounts.c.nca_id == nca_id))
            ).first()
        return None if row is None else _record(row)

    async def list_all(self) -> list[AccountRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(tables.accounts).order_by(tables.accounts.c.nca_id))).all()
        return [_record(row) for row in rows]

    async def create(
        self, nca_id: str, name: str, max_functions_allowed: int, **limits: int
    ) -> AccountRecord:
        """Insert a new account; ConflictError if the id is taken.

        `limits`: max_tasks_allowed, max_telemetries_allowed, max_registry_credentials_allowed.
        """
        now = now_utc()
        values = {
            "nca_id": nca_id,
            "name": name,
            "max_functions_allowed": max_functions_allowed,
            "created_at": now,
            "updated_at": now,
            **limits,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(tables.accounts).values(**values))
        except IntegrityError as error:
            raise ConflictError(f"Account '{nca_id}' already exists") from error
        return AccountRecord(nca_id, name, max_functions_allowed, now, now, **limits)

    async def ensure(self, nca_id: str, name: str, max_functions_allowed: int) -> bool:
        """Create the account unless it exists; True if it was created (safe under races)."""
        if await self.get(nca_id) is not None:
            return False
        try:
            await self.create(nca_id, name, max_functions_allowed)
        except ConflictError:
            return False
        return True

    async def update(self, nca_id: str, **values: object) -> AccountRecord | None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(tables.accounts)
                .where(tables.accounts.c.nca_id == nca_id)
                .values(**values, updated_at=now_utc())
            )
        if result.rowcount == 0:
            return None
        return await self.get(nca_id)

    async def delete(self, nca_id: str) -> bool:
        async with self._engine.begin() as conn:
            # dependent rows without ON DELETE CASCADE on every backend: remove them explicitly
            await conn.execute(delete(tables.api_keys).where(tables.api_keys.c.nca_id == nca_id))
            await conn.execute(delete(tables.clients).where(tables.clients.c.nca_id == nca_id))
            result = await conn.execute(delete(tables.accounts).where(tables.accounts.c.nca_id == nca_id))
        return bool(result.rowcount)

    async def count_functions(self, nca_id: str) -> int:
        async with self._engine.connect() as conn:
            query = (
                select(func.count()).select_from(tables.functions).where(tables.functions.c.nca_id == nca_id)
            )
            return int((await conn.execute(query)).scalar_one())

    async def is_authorized_party(self, nca_id: str) -> bool:
        async with self._engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(tables.authorized_parties)
                .where(tables.authorized_parties.c.nca_id == nca_id)
            )
            return int((await conn.execute(query)).scalar_one()) > 0

    async def client_ids(self, nca_id: str) -> list[str]:
        async with self._engine.connect() as conn:
            query = select(tables.clients.c.client_id).where(tables.clients.c.nca_id == nca_id)
            return sorted(r[0] for r in (await conn.execute(query)).all())

    async def telemetries(self, nca_id: str) -> list[TelemetryRecord]:
        async with self._engine.connect() as conn:
            return await telemetries_repo.list_telemetries(conn, nca_id)

    async def registry_credentials(self, nca_id: str) -> list[RegistryCredentialRecord]:
        async with self._engine.connect() as conn:
            return await registry_credentials_repo.list_credentials(conn, nca_id)
