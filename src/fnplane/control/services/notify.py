"""Signals that what should run changed: `ClusterNotifier` (to agents), `UndeployNotifier` (to
gateways) and `WakeReconciler`.

A service that changes what should run (a deployment, a PATCH of min/max, an instance report, a
registered cluster, the autoscaler's new target) calls the `WakeReconciler` it was built with (the
reconciler's `wake`) for an immediate pass instead of waiting a period; that is the only wake path.

Whoever builds the control plane hands `create_app` one callback, `notify_cluster_changed(name)`
(`fnplane up` publishes `subjects.cluster_changed(name)` on NATS); without one (None), agents find
changes by polling. A lost kick only delays the agent until its next poll, so a failing callback is logged,
never raised into the API call or reconcile pass that changed the assignments.

An undeploy (of the deployment, or with its version deleted) tells every gateway through
`UndeployNotifier`: their cached grants of the function go (a revocation of the function's grants, so
the next request sees the version INACTIVE), and the requests still queued for the version, which no
instance will ever take, are answered at once (`publish_undeployed`, invocation/undeploys.py). Without
the notice they would wait out their poll window, and a detached one its hour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from fnplane.control.auth.revocation import Revoker
from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories.transactions import Database
from fnplane.shared import wire
from fnplane.shared.loop import within
from fnplane.shared.revocations import revoked

log = logging.getLogger(__name__)

NotifyClusterChanged = Callable[[str], Awaitable[None]]
PublishUndeployed = Callable[[wire.Undeployed], Awaitable[None]]
WakeReconciler = Callable[[], None]

NOTIFY_TIMEOUT_S = 2.0


class ClusterNotifier:
    """Kicks the agents of clusters (by id) whose instance assignments changed."""

    def __init__(self, database: Database, notify_cluster_changed: NotifyClusterChanged | None) -> None:
        self._database = database
        self._notify = notify_cluster_changed

    async def clusters(self, cluster_ids: Iterable[str]) -> None:
        ids = set(cluster_ids)
        if self._notify is None or not ids:
            return
        async with self._database.reading() as conn:
            names = [c.name for c in await clusters_repo.all_clusters(conn) if c.cluster_id in ids]
        for name in sorted(set(names)):
            try:
                await within(self._notify(name), NOTIFY_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:  # the kick is an optimisation: the agent polls anyway (see module docstring)
                log.warning("could not notify cluster %s of changed assignments", name, exc_info=True)


class UndeployNotifier:
    """Tells every gateway that a version was undeployed (after the change is committed)."""

    def __init__(self, revoker: Revoker, publish_undeployed: PublishUndeployed | None) -> None:
        self._revoker = revoker
        self._publish = publish_undeployed

    async def undeployed(self, function_id: str, version_id: str) -> None:
        await self._revoker.revoked(revoked(function_ids=[function_id]))
        if self._publish is None:
            return
        try:
            await within(self._publish(wire.Undeployed(function_id, version_id)), NOTIFY_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # committed; the queued requests then end as before (window, TTL)
            log.warning("could not tell the gateways of the undeploy of %s", version_id, exc_info=True)
