"""Fixtures every test tier shares: databases (SQLite and the real PostgreSQL) and a control-plane app,
a real Podman with the test images (tests/podman.py: `podman_service`, `container_images`), and a real
registry with an image pushed to it (tests/container_registry.py: `container_registry`).

PostgreSQL tests run when FNPLANE_TEST_POSTGRES_URL is set (`.ci/run` and `make test` set it to the
local server); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from container_registry import container_registry
from podman import build_images_for, container_images, podman_service

# fixtures, registered by being imported here
__all__ = ["container_images", "container_registry", "podman_service"]

POSTGRES_URL = os.environ.get("FNPLANE_TEST_POSTGRES_URL", "")


async def _create_postgres_database() -> tuple[str, str]:
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL)
    name = f"fnplane_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(
        host=admin.host,
        port=admin.port or 5432,
        user=admin.username,
        password=admin.password,
        database=admin.database,
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, admin.set(database=name).render_as_string(hide_password=False)


async def _drop_postgres_database(name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=admin.host,
        port=admin.port or 5432,
        user=admin.username,
        password=admin.password,
        database=admin.database,
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def _fresh_postgres_database() -> AsyncIterator[str]:
    if not POSTGRES_URL:
        pytest.skip("FNPLANE_TEST_POSTGRES_URL is not set")
    name, url = await _create_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database: once on SQLite, once on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fnplane.db"
        return
    async with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty database on the real PostgreSQL only (for what SQLite cannot do: replicas)."""
    async with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """For tests whose subject is not the database."""
    return f"sqlite:///{tmp_path}/fnplane.db"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # the test images are built here, not in a test's setup, out of reach of the per-test timeout
    build_images_for(items)


# pytest-timeout ends a slow test cleanly with a signal (pyproject: timeout). A test that outlives that,
# say a cleanup waiting on a process that cannot die, would hold its xdist worker and the whole run until
# CI's own limit, saying nothing. After twice the timeout the watchdog prints every thread's stack and ends
# the worker: xdist reports the test as crashed, names it, and goes on with a new worker.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    limit_s = 2 * float(item.config.getini("timeout") or 0)
    if not limit_s:
        yield
        return
    watchdog = threading.Timer(limit_s, _end_a_hung_worker, args=(item, limit_s))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()


def _end_a_hung_worker(item: pytest.Item, limit_s: float) -> None:
    try:
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)  # the stacks go to the run's own stderr
        sys.stderr.write(f"\n+++ {item.nodeid} still running after {limit_s:.0f} s; every thread:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    finally:
        sys.stderr.flush()
        os._exit(3)
