"""One database transaction for a use case that spans several tables.

SQLite allows one writer; a WAL transaction that reads and then writes fails with "database is
locked" (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not retry) if another connection wrote in
between. The control plane is one process, so its multi-table writes are serialised by a lock per
engine on SQLite; PostgreSQL transactions run concurrently (placement locks rows instead).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Connection = AsyncConnection
Engine = AsyncEngine

_locks: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock_for(engine: AsyncEngine) -> asyncio.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    lock = _locks.get(engine)
    if lock is None:
        lock = _locks[engine] = asyncio.Lock()
    return lock


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-write transaction: committed when the block ends, rolled back on an exception."""
    lock = _lock_for(engine)
    if lock is None:
        async with engine.begin() as conn:
            yield conn
        return
    async with lock, engine.begin() as conn:
        yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only connection (no lock: WAL readers never block and are never blocked)."""
    async with engine.connect() as conn:
        yield conn


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"
