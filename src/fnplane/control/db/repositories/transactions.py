"""`Database`: the engine and the transactions a use case opens on it (one per control plane).

SQLite allows one writer; a WAL transaction that reads and then writes fails with "database is
locked" (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not retry) if another connection wrote in
between. The control plane is one process, so on SQLite its multi-table writes are serialised by the
lock this object owns; PostgreSQL transactions run concurrently (placement locks rows instead).
Whoever builds the control plane builds one `Database` for its engine and hands it to every service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Connection = AsyncConnection
Engine = AsyncEngine


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction: committed when the block ends, rolled back on an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (no lock: WAL readers never block and are never blocked)."""
        async with self.engine.connect() as conn:
            yield conn


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"
