"""The revocation broadcast on core NATS (`subjects.CREDENTIALS_REVOKED`, shared/revocations.py).

`revocation_publisher(nc)` is the control plane's `publish_revoked` callback; the gateway subscribes
in its own bus module (invocation/bus.py). A publish is flushed before it returns, so that when the
API call that revoked a credential answers, the server already has the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fnplane.bus.connection import Client
from fnplane.shared import revocations, subjects
from fnplane.shared.errors import UnavailableError
from fnplane.shared.revocations import CredentialsRevoked

FLUSH_TIMEOUT_S = 1  # nats-py takes whole seconds here


def revocation_publisher(nc: Client) -> Callable[[CredentialsRevoked], Awaitable[None]]:
    """Publish a revocation on `nc`; UnavailableError while it is disconnected."""

    async def publish(event: CredentialsRevoked) -> None:
        if not nc.is_connected:
            raise UnavailableError("not connected to NATS")
        await nc.publish(subjects.CREDENTIALS_REVOKED, revocations.encode(event))
        await nc.flush(timeout=FLUSH_TIMEOUT_S)

    return publish
