"""`fnplane agent`: a compute-plane agent alone in the foreground, so another host can join a platform."""

from __future__ import annotations

import asyncio
from typing import Any

from fnplane.compute.agent import run_agent
from fnplane.compute.settings import AgentSettings
from fnplane.up.metrics import MetricsServer


def run_agent_command(
    overrides: dict[str, Any], *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1"
) -> int:
    """Build AgentSettings (environment FNPLANE_AGENT_*, then `overrides`) and run until a signal;
    with `metrics_port`, GET /metrics (the agent's and its workers' metrics) on `metrics_host`."""
    settings = AgentSettings(**overrides)
    result = asyncio.run(_serve(settings, metrics_port, metrics_host))
    return int(result or 0)


async def _serve(settings: AgentSettings, metrics_port: int | None, metrics_host: str) -> int:
    server = MetricsServer(metrics_host, metrics_port) if metrics_port is not None else None
    if server is not None:
        await server.start(metrics_host)
    try:
        return await run_agent(settings)
    finally:
        if server is not None:
            await server.aclose()
