"""One way to connect to NATS: reconnect forever, with the same options in every component.

Every component connects with its own credential (`bus/credentials.py`, permissions in
`shared/permissions.py`): an in-memory `UserCredential`, or the path of a `.creds` file (read again at
each reconnect, never put on a command line). `inbox_prefix` gives a component reply inboxes its
credential alone may subscribe to.

A component that has to re-arm something after the server came back (a worker's pull bookkeeping)
passes `on_reconnected`; subscriptions and JetStream state survive by themselves (the embedded server
keeps its store on disk and `fnplane up` restarts it on the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

from fnplane.bus.credentials import UserCredential
from fnplane.shared.errors import UnavailableError

__all__ = ["BusCredential", "Client", "NatsError", "connect"]

# what a component proves itself with: none (an open server), a credential, or a `.creds` file
BusCredential = UserCredential | Path | None

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
    credential: BusCredential = None,
    inbox_prefix: str | None = None,
    give_up_after_s: float | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A client that reconnects forever; NatsError at once when the server refuses the credential.
    The first connection is tried until it works, or for `give_up_after_s` (then UnavailableError).

    nats-py does not reconnect after an error the server reports on the connection (a message over
    max_payload, say): it closes the client for good. `on_closed` runs when the client closed, also by
    our own close(), so that a component can tell it is no longer on the bus."""
    nc = Client()

    async def disconnected() -> None:
        if not nc.is_closed:  # not our own close()
            log.warning("%s lost its NATS connection; reconnecting", name)

    async def reconnected() -> None:
        log.info("%s reconnected to NATS", name)
        if on_reconnected is not None:
            await on_reconnected()

    first_failure_logged = False

    async def error(exc: Exception) -> None:
        nonlocal first_failure_logged
        text = str(exc).lower()
        if not connected and not first_failure_logged:
            first_failure_logged = True  # once: the attempts go on every reconnect_wait_s
            log.warning("%s cannot reach NATS at %s yet (%r); retrying", name, url, exc)
        if not connected and ("authorization" in text or "authentication" in text):
            # a credential the server refuses will not get better by retrying: the first connect
            # fails (nats-py checks this option right after this callback)
            nc.options["allow_reconnect"] = False
            log.error("%s: NATS refused the credential: %s", name, exc)
        # a refused publish or subscription is a bug or an attack: say so; the rest is routine
        elif "permission" in text:
            log.warning("%s: NATS refused: %s", name, exc)
        else:
            log.debug("%s NATS error: %r", name, exc)

    # nats-py annotates the timeouts as int; it takes seconds as float
    timeouts: dict[str, Any] = {"connect_timeout": connect_timeout_s, "reconnect_time_wait": reconnect_wait_s}
    auth: dict[str, Any] = {}
    if isinstance(credential, Path):
        auth["user_credentials"] = str(credential)
    elif credential is not None:
        jwt = credential.jwt.encode()
        auth["user_jwt_cb"] = lambda: jwt
        auth["signature_cb"] = credential.sign
    if inbox_prefix:
        auth["inbox_prefix"] = inbox_prefix
    connected = False
    try:
        async with asyncio.timeout(give_up_after_s):
            await nc.connect(
                # a cluster: "nats://a:4222,nats://b:4222" (the client learns the others from the server)
                [server.strip() for server in url.split(",") if server.strip()],
                name=name,
                max_reconnect_attempts=-1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                closed_cb=on_closed,
                **timeouts,
                **auth,
            )
    except TimeoutError:
        with contextlib.suppress(Exception):
            await nc.close()
        raise UnavailableError(f"cannot reach NATS at {url} within {give_up_after_s:g} s") from None
    connected = True
    return nc


def closed_for_good(clients: Mapping[str, Client | None]) -> str | None:
    """Why a component is off the bus for good: the first of `clients` (what it is for -> client) that
    nats-py closed, with the server's error; None while each is connected or reconnecting.

    A client the server closed on an error (a message over max_payload, an authorization violation)
    is never reopened: a component left so would answer 503 until someone restarts it, so its process
    reports it as a failure and stops instead (a process supervisor brings it back)."""
    for purpose, nc in clients.items():
        if nc is not None and nc.is_closed:
            reason = f": {nc.last_error}" if nc.last_error is not None else ""
            return f"the {purpose}'s NATS connection was closed by the server{reason}"
    return None
