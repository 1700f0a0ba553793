"""Telemetries: the `telemetries` table (one account's telemetry endpoints) and the function versions
that name them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc
from fnplane.control.db.repositories.transactions import Connection, is_postgres

T = tables.telemetries
V = tables.function_versions


@dataclass(frozen=True)
class TelemetryRecord:
    telemetry_id: str
    nca_id: str
    name: str
    endpoint: str
    protocol: str
    provider: str
    types: list[str]
    # {"name", "sealed"}: never leaves the control plane
    secret: dict[str, str]
    created_at: datetime
    updated_at: datetime


class DuplicateTelemetryNameError(Exception):
    """The account has a telemetry of that name already (the service answers it 400, as NVCF)."""


def _record(row: Any) -> TelemetryRecord:
    m = row._mapping
    return TelemetryRecord(
        m["telemetry_id"],
        m["nca_id"],
        m["name"],
        m["endpoint"],
        m["protocol"],
        m["provider"],
        list(m["types"] or []),
        dict(m["secret"]),
        utc(m["created_at"]),
        utc(m["updated_at"]),
    )


async def lock_account(conn: Connection, nca_id: str) -> None:
    """Serialise the account's telemetry creations (PostgreSQL), so that the cap holds under races;
    SQLite's writes are serialised by `Database` already."""
    if is_postgres(conn):
        query = select(tables.accounts.c.nca_id).where(tables.accounts.c.nca_id == nca_id)
        await conn.execute(query.with_for_update())


async def insert_telemetry(conn: Connection, record: TelemetryRecord) -> None:
    """DuplicateTelemetryNameError when the account has a telemetry of that name."""
    duplicate = select(T.c.telemetry_id).where(T.c.nca_id == record.nca_id, T.c.name == record.name)
    if (await conn.execute(duplicate)).first() is not None:
        raise DuplicateTelemetryNameError(record.name)
    values = {
        "telemetry_id": record.telemetry_id,
        "nca_id": record.nca_id,
        "name": record.name,
        "endpoint": record.endpoint,
        "protocol": record.protocol,
        "provider": record.provider,
        "types": record.types,
        "secret": record.secret,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    try:
        await conn.execute(insert(T).values(**values))
    except IntegrityError:  # a concurrent insert (PostgreSQL) won the race
        raise DuplicateTelemetryNameError(record.name) from None


async def count(conn: Connection, nca_id: str) -> int:
    query = select(func.count()).select_from(T).where(T.c.nca_id == nca_id)
    return int((await conn.execute(query)).scalar_one())


async def list_telemetries(conn: Connection, nca_id: str) -> list[TelemetryRecord]:
    query = select(T).where(T.c.nca_id == nca_id).order_by(T.c.created_at, T.c.telemetry_id)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def get(
    conn: Connection, nca_id: str, telemetry_id: str, *, lock: str | None = None
) -> TelemetryRecord | None:
    """One telemetry of the account. `lock` (PostgreSQL): "share" keeps it from being deleted until
    the transaction ends (a version that names it is being stored), "update" waits for those."""
    query = select(T).where(T.c.nca_id == nca_id, T.c.telemetry_id == telemetry_id)
    if lock is not None and is_postgres(conn):
        query = query.with_for_update(read=lock == "share")
    row = (await conn.execute(query)).first()
    return _record(row) if row is not None else None


async def update_telemetry(conn: Connection, telemetry_id: str, **values: Any) -> None:
    await conn.execute(update(T).where(T.c.telemetry_id == telemetry_id).values(**values))


async def delete_telemetry(conn: Connection, nca_id: str, telemetry_id: str) -> bool:
    query = delete(T).where(T.c.nca_id == nca_id, T.c.telemetry_id == telemetry_id)
    return bool((await conn.execute(query)).rowcount)


async def versions_using(conn: Connection, nca_id: str, telemetry_id: str) -> list[tuple[str, str]]:
    """(function id, version id) of the account's versions whose `telemetries` name the telemetry."""
    query = (
        select(V.c.function_id, V.c.version_id, V.c.telemetries)
        .where(V.c.nca_id == nca_id, V.c.telemetries.is_not(None))
        .order_by(V.c.created_at, V.c.version_id)
    )
    return [
        (row.function_id, row.version_id)
        for row in (await conn.execute(query)).all()
        if isinstance(row.telemetries, dict) and telemetry_id in row.telemetries.values()
    ]
