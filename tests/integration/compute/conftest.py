"""Fixtures of the compute integration tests (a real platform per test, see compute_stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compute_stack import Platform, platform


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform(tmp_path) as running:
        yield running
