"""Registry credentials: the `registry_credentials` table (one account's logins to registries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fnplane.control.db import tables
from fnplane.control.db.repositories._time import utc
from fnplane.control.db.repositories.transactions import Connection
from fnplane.shared.errors import ConflictError

R = tables.registry_credentials


@dataclass(frozen=True)
class RegistryCredentialRecord:
    registry_credential_id: str
    nca_id: str
    name: str
    hostname: str
    artifact_types: list[str]
    tags: list[str] | None
    description: str | None
    provisioned_by: str
    # {"name", "sealed"}: never leaves the control plane but opened into an instance assignment
    secret: dict[str, str]
    created_at: datetime
    updated_at: datetime


def _record(row: Any) -> RegistryCredentialRecord:
    m = row._mapping
    return RegistryCredentialRecord(
        m["registry_credential_id"],
        m["nca_id"],
        m["name"],
        m["hostname"],
        list(m["artifact_types"] or []),
        list(m["tags"]) if m["tags"] is not None else None,
        m["description"],
        m["provisioned_by"],
        dict(m["secret"]),
        utc(m["created_at"]),
        utc(m["updated_at"]),
    )


async def insert_credential(conn: Connection, record: RegistryCredentialRecord) -> None:
    """ConflictError when the account has a credential of that name for that host already."""
    values = {
        "registry_credential_id": record.registry_credential_id,
        "nca_id": record.nca_id,
        "name": record.name,
        "hostname": record.hostname,
        "artifact_types": record.artifact_types,
        "tags": record.tags,
        "description": record.description,
        "provisioned_by": record.provisioned_by,
        "secret": record.secret,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    duplicate = select(R.c.registry_credential_id).where(
        R.c.nca_id == record.nca_id, R.c.name == record.name, R.c.hostname == record.hostname
    )
    if (await conn.execute(duplicate)).first() is not None:
        raise _duplicate(record)
    try:
        await conn.execute(insert(R).values(**values))
    except IntegrityError:  # a concurrent insert (PostgreSQL) won the race
        raise _duplicate(record) from None


def _duplicate(record: RegistryCredentialRecord) -> ConflictError:
    return ConflictError(f"a registry credential named {record.name!r} for {record.hostname} exists already")


async def count(conn: Connection, nca_id: str) -> int:
    return int(
        (await conn.execute(select(func.count()).select_from(R).where(R.c.nca_id == nca_id))).scalar_one()
    )


async def list_credentials(conn: Connection, nca_id: str) -> list[RegistryCredentialRecord]:
    query = select(R).where(R.c.nca_id == nca_id).order_by(R.c.created_at, R.c.registry_credential_id)
    return [_record(row) for row in (await conn.execute(query)).all()]


async def get(conn: Connection, nca_id: str, credential_id: str) -> RegistryCredentialRecord | None:
    query = select(R).where(R.c.nca_id == nca_id, R.c.registry_credential_id == credential_id)
    row = (await conn.execute(query)).first()
    return _record(row) if row is not None else None


async def for_host(conn: Connection, nca_id: str, hostname: str) -> RegistryCredentialRecord | None:
    """The account's newest CONTAINER credential for a registry host."""
    query = (
        select(R)
        .where(R.c.nca_id == nca_id, R.c.hostname == hostname)
        .order_by(R.c.updated_at.desc(), R.c.registry_credential_id)
    )
    for row in (await conn.execute(query)).all():
        record = _record(row)
        if "CONTAINER" in record.artifact_types:
            return record
    return None


async def update_credential(conn: Connection, credential_id: str, **values: Any) -> None:
    await conn.execute(update(R).where(R.c.registry_credential_id == credential_id).values(**values))


async def delete_credential(conn: Connection, nca_id: str, credential_id: str) -> bool:
    query = delete(R).where(R.c.nca_id == nca_id, R.c.registry_credential_id == credential_id)
    return bool((await conn.execute(query)).rowcount)
