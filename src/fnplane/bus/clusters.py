"""The control plane's kick to an agent: "your instance assignments changed" (`subjects.cluster_changed`).

A lost kick only delays the agent until its next poll, so a disconnected client skips it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fnplane.bus.connection import Client
from fnplane.shared import subjects


def cluster_notifier(nc: Client) -> Callable[[str], Awaitable[None]]:
    """The `notify_cluster_changed` callback of the control app, publishing on `nc`."""

    async def notify(cluster_name: str) -> None:
        if nc.is_connected:
            await nc.publish(subjects.cluster_changed(cluster_name), b"")

    return notify
