"""The control lease (control/db/lease.py) on the real PostgreSQL: one holder at a time, and a holder
whose connection dies (PostgreSQL ends its session, as when its process is killed) is replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import polling
from fnplane.control.db.engine import create_engine
from fnplane.control.db.lease import AdvisoryLease, LocalLease, create_lease, exclusively, lock_key

pytestmark = pytest.mark.postgres

POLL_S = 0.2


@pytest.fixture
async def engines(postgres_url: str) -> AsyncIterator[list[AsyncEngine]]:
    """Three engines on one database: two replicas and an observer (each its own pool)."""
    made = [create_engine(postgres_url) for _ in range(3)]
    try:
        yield made
    finally:
        for engine in made:
            await engine.dispose()


def _now(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def predicate() -> bool:
        return check()

    return predicate


async def _holder_pids(observer: AsyncEngine, name: str) -> list[int]:
    key = lock_key(name)
    # an advisory lock on a bigint key: classid is its high 32 bits, objid the low ones
    async with observer.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid)"
            ),
            {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
        )
        return [int(row[0]) for row in rows]


async def test_one_of_two_holds_and_the_other_takes_over_when_the_holder_is_gone(
    engines: list[AsyncEngine],
) -> None:
    first, second, observer = engines
    a = AdvisoryLease(first, "test.lease", poll_interval_s=POLL_S)
    b = AdvisoryLease(second, "test.lease", poll_interval_s=POLL_S)
    acquired: list[str] = []
    a.on_acquired(lambda: acquired.append("a"))
    b.on_acquired(lambda: acquired.append("b"))
    await a.start()
    await b.start()
    try:
        assert (a.held, b.held) == (True, False)
        assert len(await _holder_pids(observer, "test.lease")) == 1
        await asyncio.sleep(3 * POLL_S)  # b keeps trying; a keeps it
        assert (a.held, b.held) == (True, False)

        # a's session ends without a's say (its process killed, PostgreSQL restarted for it)
        [pid] = await _holder_pids(observer, "test.lease")
        async with observer.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await polling.wait_for(_now(lambda: b.held), 10)
        await polling.wait_for(_now(lambda: not a.held), 10)
        assert acquired == ["a", "b"]

        # a released lease is taken at once by the other
        await b.aclose()
        await polling.wait_for(_now(lambda: a.held), 10)
        assert acquired == ["a", "b", "a"]
    finally:
        await a.aclose()
        await b.aclose()
    assert await _holder_pids(observer, "test.lease") == []


async def test_leases_of_other_names_do_not_exclude_each_other(engines: list[AsyncEngine]) -> None:
    first, second, _ = engines
    a = AdvisoryLease(first, "test.one", poll_interval_s=POLL_S)
    b = AdvisoryLease(second, "test.two", poll_interval_s=POLL_S)
    await a.start()
    await b.start()
    try:
        assert a.held and b.held
    finally:
        await a.aclose()
        await b.aclose()


async def test_exclusively_runs_one_block_at_a_time(engines: list[AsyncEngine]) -> None:
    inside = 0
    most = 0

    async def block(engine: AsyncEngine) -> None:
        nonlocal inside, most
        async with exclusively(engine, "test.bootstrap"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.2)
            inside -= 1

    await asyncio.gather(*(block(engine) for engine in engines))
    assert most == 1


def test_sqlite_has_a_local_lease_that_is_always_held(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/fnplane.db")
    lease = create_lease(engine)
    assert isinstance(lease, LocalLease) and lease.held
