"""Fixtures every test tier shares: databases (SQLite and the real PostgreSQL) and a control-plane app,
a real Podman with the test images (tests/podman.py: `podman_service`, `container_images`), and a real
registry with an image pushed to it (tests/container_registry.py: `container_registry`).

PostgreSQL tests run when FNPLANE_TEST_POSTGRES_URL is set (`.ci/run` and `make test` set it to the
local server); each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import faulthandler
import os
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
# say a cleanup waiting on a process that cannot die, or C code that never gives the interpreter back
# (so no signal handler runs), would hold its xdist worker and the whole run until CI's own limit, saying
# nothing. faulthandler's timer is a C thread that needs no GIL: after twice the timeout it prints every
# thread's stack to the run's own stderr and ends the worker; xdist reports the test as crashed, names it,
# and goes on with a new worker.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    limit_s = 2 * float(item.config.getini("timeout") or 0)
    if limit_s:
        faulthandler.dump_traceback_later(limit_s, exit=True, file=_run_stderr(item.config))
    try:
        yield
    finally:
        if limit_s:
            faulthandler.cancel_dump_traceback_later()


def _run_stderr(config: pytest.Config) -> int:
    """The stderr the run started with: while a test runs, fd 2 is pytest's capture file."""
    capture = config.pluginmanager.getplugin("capturemanager")
    saved = getattr(getattr(getattr(capture, "_global_capturing", None), "err", None), "targetfd_save", None)
    return saved if isinstance(saved, int) else 2
