"""The undeploy broadcast on core NATS (`subjects.VERSIONS_UNDEPLOYED`, `wire.Undeployed`).

`undeploy_publisher(nc)` is the control plane's `publish_undeployed` callback; the gateway subscribes
in its own bus module (invocation/bus.py). Flushed before it returns, as a revocation is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fnplane.bus.connection import Client
from fnplane.bus.revocations import FLUSH_TIMEOUT_S
from fnplane.shared import subjects, wire
from fnplane.shared.errors import UnavailableError


def undeploy_publisher(nc: Client) -> Callable[[wire.Undeployed], Awaitable[None]]:
    """Publish an undeploy notice on `nc`; UnavailableError while it is disconnected."""

    async def publish(event: wire.Undeployed) -> None:
        if not nc.is_connected:
            raise UnavailableError("not connected to NATS")
        await nc.publish(subjects.VERSIONS_UNDEPLOYED, wire.encode_undeployed(event))
        await nc.flush(timeout=FLUSH_TIMEOUT_S)

    return publish
