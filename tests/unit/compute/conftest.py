"""Fixtures of the compute unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from compute_support import fast_settings

from fnplane.compute.settings import AgentSettings


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return fast_settings(tmp_path / "home")
