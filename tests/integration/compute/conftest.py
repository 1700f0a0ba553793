"""Fixtures of the compute integration tests (a real platform per test, see compute_stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compute_stack import Platform, platform


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Platform]:
    """The platform on SQLite, for tests whose subject is not the database."""
    async with platform(tmp_path) as running:
        yield running


@pytest.fixture
async def db_stack(tmp_path: Path, database_url: str) -> AsyncIterator[Platform]:
    """The platform once on SQLite and once on the real PostgreSQL (FNPLANE_TEST_POSTGRES_URL)."""
    async with platform(tmp_path, database_url) as running:
        yield running
