"""`Revoker`: a credential stopped being valid, or may do less; every process must forget it now.

A service that revokes (a key deleted or re-authorized, a service account deleted or rotated, an
account deleted, a function's authorized parties reduced, the admin key replaced) calls `revoked()`
after its change is committed. This process's authenticator forgets the matching credentials at once,
then the event is broadcast (`publish_revoked`, `fnplane up` publishes on NATS
`subjects.CREDENTIALS_REVOKED`) so that every gateway drops its cached grants and ends the open
invocations that are no longer allowed (invocation/revocations.py).

A broadcast that cannot be sent is logged, never raised into the API call (the change is committed):
the caches' TTL (`auth_cache_ttl_s`) is then the bound, as it is for a gateway that was disconnected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from fnplane.shared.loop import within
from fnplane.shared.revocations import CredentialsRevoked

log = logging.getLogger(__name__)

PublishRevoked = Callable[[CredentialsRevoked], Awaitable[None]]

PUBLISH_TIMEOUT_S = 2.0


class ForgetsCredentials(Protocol):
    def forget(self, event: CredentialsRevoked) -> None:
        """Drop every cached resolution the event covers."""
        ...


class Revoker:
    def __init__(self, cache: ForgetsCredentials, publish_revoked: PublishRevoked | None) -> None:
        self._cache = cache
        self._publish = publish_revoked

    async def revoked(self, event: CredentialsRevoked) -> None:
        if event.empty:
            return
        self._cache.forget(event)
        if self._publish is None:
            return
        try:
            await within(self._publish(event), PUBLISH_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # the change is committed; the caches' TTL bounds what the broadcast missed
            log.warning("could not broadcast a credential revocation %s", event, exc_info=True)
