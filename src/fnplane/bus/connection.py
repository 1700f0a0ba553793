"""One way to connect to NATS: reconnect forever, with the same options in every component.

A component that has to re-arm something after the server came back (a worker's pull bookkeeping)
passes `on_reconnected`; subscriptions and JetStream state survive by themselves (the embedded server
keeps its store on disk and `fnplane up` restarts it on the same port).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

__all__ = ["Client", "NatsError", "connect"]

log = logging.getLogger(__name__)

# how long a disconnected client waits between attempts to reach the server again (nats-py's default);
# the gateway asks for less, so that it listens again before workers send the answers they held
RECONNECT_WAIT_S = 2.0


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout_s: float = 5.0,
    reconnect_wait_s: float = RECONNECT_WAIT_S,
    on_reconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A client that reconnects forever; OSError / TimeoutError / NatsError when the first try fails."""
    nc = Client()

    async def disconnected() -> None:
        if not nc.is_closed:  # not our own close()
            log.warning("%s lost its NATS connection; reconnecting", name)

    async def reconnected() -> None:
        log.info("%s reconnected to NATS", name)
        if on_reconnected is not None:
            await on_reconnected()

    async def error(exc: Exception) -> None:
        log.debug("%s NATS error: %r", name, exc)

    # nats-py annotates the timeouts as int; it takes seconds as float
    timeouts: dict[str, Any] = {"connect_timeout": connect_timeout_s, "reconnect_time_wait": reconnect_wait_s}
    await nc.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        **timeouts,
    )
    return nc
