"""`fnplane agent`: a compute-plane agent alone in the foreground, so another host can join a platform."""

from __future__ import annotations

import asyncio
from typing import Any

from fnplane.compute.agent import run_agent
from fnplane.compute.settings import AgentSettings


def run_agent_command(overrides: dict[str, Any]) -> int:
    """Build AgentSettings (environment FNPLANE_AGENT_*, then `overrides`) and run until a signal."""
    settings = AgentSettings(**overrides)
    result = asyncio.run(run_agent(settings))
    return int(result or 0)
