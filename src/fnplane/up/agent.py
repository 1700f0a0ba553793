"""`fnplane agent`: a compute-plane agent alone in the foreground, so another host can join a platform."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fnplane.up.supervisor import optional_attribute

logger = logging.getLogger(__name__)


def run_agent_command(overrides: dict[str, Any]) -> int:
    """Build AgentSettings (environment FNPLANE_AGENT_*, then `overrides`) and run until a signal."""
    run_agent = optional_attribute("fnplane.compute.agent", "run_agent")
    if run_agent is None:
        logger.error("the compute-plane agent is not part of this build yet")
        return 1
    from fnplane.compute.settings import AgentSettings

    settings = AgentSettings(**overrides)
    result = asyncio.run(run_agent(settings))
    return int(result or 0)
