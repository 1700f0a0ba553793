"""Core-NATS broadcasts among control-plane replicas (`fnplane control`, docs/deploy.md).

* `subjects.CONTROL_RECONCILE`: a replica without the control lease was woken (an instance report, a
  deployment); the holder runs a reconcile pass (`Reconciler.wake_from_peer`).
* `subjects.CONTROL_OBSERVATIONS`: what the autoscaler of one replica learnt (an agent's load report, a
  request waiting for a version), recorded by every other (`Autoscaler.observe_from_peer`).

Both are hints: one lost while the connection is down only waits for the holder's next periodic pass
(or costs the autoscaler one sample), so a disconnected client skips the publish.

Each replica also hears the revocations another replica broadcasts (`subjects.CREDENTIALS_REVOKED`,
meant for the gateways): a gateway asks whichever replica its control URL reaches, and that replica
must not answer from a cache that still holds the revoked credential.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from fnplane.bus.connection import Client
from fnplane.shared import revocations, subjects
from fnplane.shared.revocations import CredentialsRevoked

log = logging.getLogger(__name__)


def reconcile_broadcaster(nc: Client) -> Callable[[], Awaitable[None]]:
    """The control app's `wake_peers`."""

    async def publish() -> None:
        if nc.is_connected:
            await nc.publish(subjects.CONTROL_RECONCILE, b"")

    return publish


def observation_broadcaster(nc: Client) -> Callable[[bytes], Awaitable[None]]:
    """The control app's `share_with_peers`."""

    async def publish(payload: bytes) -> None:
        if nc.is_connected:
            await nc.publish(subjects.CONTROL_OBSERVATIONS, payload)

    return publish


async def listen_to_peers(
    nc: Client,
    *,
    on_reconcile: Callable[[], None],
    on_observation: Callable[[bytes], None],
    on_revoked: Callable[[CredentialsRevoked], None],
) -> list[Subscription]:
    """Subscribe to the three broadcasts; the caller unsubscribes (or closes `nc`)."""

    async def reconcile(_msg: Msg) -> None:
        on_reconcile()

    async def observation(msg: Msg) -> None:
        on_observation(msg.data)

    async def revocation(msg: Msg) -> None:
        try:
            event = revocations.decode(msg.data)
        except revocations.RevocationError as exc:
            log.warning("ignored a revocation message: %s", exc)
            return
        on_revoked(event)

    return [
        await nc.subscribe(subjects.CONTROL_RECONCILE, cb=reconcile),
        await nc.subscribe(subjects.CONTROL_OBSERVATIONS, cb=observation),
        await nc.subscribe(subjects.CREDENTIALS_REVOKED, cb=revocation),
    ]
