"""Once-only work across control-plane replicas: a lease that one replica holds at a time.

    lease = create_lease(engine, "fnplane.control", poll_interval_s=2.0)
    await lease.start()        # one attempt now, then one every poll interval
    if lease.held: ...         # the reconciler's and the autoscaler's cycles run only then
    await lease.aclose()       # released (another replica takes it at its next attempt)

* PostgreSQL (`AdvisoryLease`): `pg_try_advisory_lock(key)` on a connection of its own, kept out of
  the pool and in autocommit (no transaction stays open). The lock lives as long as that connection:
  a holder killed with SIGKILL loses it as soon as PostgreSQL sees the connection close, and the next
  replica to try gets it. While it holds the lease a replica checks its connection every poll
  interval; a connection that fails (PostgreSQL restarted, the network cut) means the lease is lost.
  Advisory locks are per database, so replicas on different databases never see each other's.
* SQLite (`LocalLease`): one file, one process: the lease is always held.

`exclusively(engine, name)` is the blocking form for start-up work that replicas must not do at the
same time (the first bootstrap of an empty database).

Between a holder's connection breaking and the holder noticing (at most a poll interval, plus the
round trip's timeout), another replica may already hold the lock: the work under a lease must
tolerate a short overlap. The reconciler's does: its passes are transactions, placement locks the
cluster rows (no GPU is booked twice), and an extra instance two passes placed at once is released by
the next pass, as any surplus is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTROL_LEASE = "fnplane.control"
BOOTSTRAP_LOCK = "fnplane.bootstrap"


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for a name (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Lease(Protocol):
    @property
    def held(self) -> bool: ...

    def on_acquired(self, callback: Callable[[], None]) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalLease:
    """The lease of a single-process database: always held."""

    held = True

    def on_acquired(self, callback: Callable[[], None]) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class AdvisoryLease:
    """A PostgreSQL session advisory lock, tried every `poll_interval_s` until held, then watched."""

    def __init__(
        self, engine: AsyncEngine, name: str, *, poll_interval_s: float, query_timeout_s: float = 5.0
    ) -> None:
        self._engine = engine
        self.name = name
        self._key = lock_key(name)
        self._poll_interval_s = poll_interval_s
        self._query_timeout_s = query_timeout_s
        self._connection: AsyncConnection | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[Any]] = set()  # calls and closes left to end alone

    @property
    def held(self) -> bool:
        return self._connection is not None

    def on_acquired(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time this replica becomes the holder."""
        self._callbacks.append(callback)

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._attempt()  # a lone replica holds its lease before it serves
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # the loop's own calls are bounded (`_bounded`), so this wait is only a safety net
            await asyncio.wait({task}, timeout=self._query_timeout_s)
        await self._release()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            await self._attempt()

    async def _attempt(self) -> None:
        """Take the lock if free, or check that the connection holding it still lives."""
        try:
            if self._connection is None:
                await self._bounded(self._acquire())
            else:
                await self._bounded(self._connection.exec_driver_sql("SELECT 1"))
        except (OSError, TimeoutError, SQLAlchemyError) as error:
            if self._connection is not None:
                log.warning("lease %s lost: %s", self.name, error)
            await self._release()

    async def _bounded(self, call: Awaitable[T]) -> T:
        """`call` within the query timeout. Unlike `asyncio.wait_for`, never waits for a cancelled call to
        end: asyncpg's cancellation of a running query sends a cancel request and can wait on the server
        for long (the likely cause of a lease test whose `aclose` hung two minutes in CI); it ends alone."""
        task = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._query_timeout_s)
        except asyncio.CancelledError:
            self._let_end_alone(task)
            raise
        if not done:
            self._let_end_alone(task)
            raise TimeoutError(f"no answer within {self._query_timeout_s} s")
        return task.result()

    def _let_end_alone(self, task: asyncio.Future[Any]) -> None:
        task.cancel()
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _acquire(self) -> None:
        connection = await self._engine.connect()
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            result = await connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key})
            won = bool(result.scalar())
        except BaseException:
            await _discard(connection)
            raise
        if not won:
            await connection.close()  # held by no lock of ours: back to the pool as it is
            return
        self._connection = connection
        log.info("lease %s acquired", self.name)
        for callback in self._callbacks:
            callback()

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # never back to the pool: a session lock would travel with it to the next borrower. Closing
            # a connection whose server went away can wait on the driver for long; the lease loop does
            # not wait beyond its query timeout (the close goes on alone)
            closing = asyncio.create_task(_discard(connection), name=f"lease-{self.name}-discard")
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            await asyncio.wait({closing}, timeout=self._query_timeout_s)


async def _discard(connection: AsyncConnection) -> None:
    """Close the connection for good (PostgreSQL drops the session and every lock it held)."""
    try:
        await connection.invalidate()
        await connection.close()
    except (OSError, SQLAlchemyError, DBAPIError) as error:
        log.debug("closing a lease connection: %s", error)


def create_lease(engine: AsyncEngine, name: str = CONTROL_LEASE, *, poll_interval_s: float = 2.0) -> Lease:
    """An `AdvisoryLease` on PostgreSQL, a `LocalLease` on SQLite (one process)."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLease(engine, name, poll_interval_s=poll_interval_s)
    return LocalLease()


@asynccontextmanager
async def exclusively(engine: AsyncEngine, name: str = BOOTSTRAP_LOCK) -> AsyncIterator[None]:
    """Run the block while no other process holds `name` (PostgreSQL: waits for it); SQLite: at once."""
    if engine.dialect.name != "postgresql":
        yield
        return
    connection = await engine.connect()
    try:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
        yield
    finally:
        await _discard(connection)
