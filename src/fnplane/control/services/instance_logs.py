"""Instance logs for users (fnplane extension): find the instance's cluster, ask its agent over NATS.

`InstanceLogService` is built with the NATS connection the control plane asks agents through (`nats`
given to `create_app`; without one, logs answer 503). The wire protocol is shared/models/logs.py.
Only the function's owner account reads logs: a version that is merely shared with the caller answers
404 for its instances, as if they did not exist (the route checks that).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from fnplane.control.db.repositories import clusters as clusters_repo
from fnplane.control.db.repositories import instances as instances_repo
from fnplane.control.db.repositories.transactions import Database
from fnplane.shared import subjects
from fnplane.shared.errors import NotFoundError, UnavailableError
from fnplane.shared.models.logs import InstanceLogsChunk, InstanceLogsRequest

# how long the agent may take to send its first answer
AGENT_REPLY_TIMEOUT_S = 5.0
# a follow stream ends after this long without any message (the agent sends its own end marker first)
FOLLOW_IDLE_TIMEOUT_S = 3600.0 + 60.0


class NatsConnection(Protocol):
    """What instance logs use of a `nats.aio.client.Client` (the control plane does not import nats)."""

    @property
    def is_connected(self) -> bool: ...

    def new_inbox(self) -> str: ...

    async def subscribe(self, subject: str) -> Any: ...

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None: ...


def _require_nats(nc: NatsConnection | None) -> NatsConnection:
    if nc is None or not getattr(nc, "is_connected", False):
        raise UnavailableError("Instance logs need NATS, which the control plane is not connected to")
    return nc


class InstanceLogService:
    def __init__(self, database: Database, nats: NatsConnection | None) -> None:
        self._database = database
        self._nats = nats

    async def instance_cluster(self, function_id: str, version_id: str, instance_id: str) -> str:
        """The name of the cluster that runs (or ran) the instance; 404 unless it belongs to the version."""
        async with self._database.reading() as conn:
            row = await instances_repo.get(conn, instance_id)
            if row is None or row.version_id != version_id or row.function_id != function_id:
                raise NotFoundError(f"Instance '{instance_id}' not found for function version '{version_id}'")
            for cluster in await clusters_repo.all_clusters(conn):
                if cluster.cluster_id == row.cluster_id:
                    return cluster.name
        raise NotFoundError(f"Instance '{instance_id}' has no cluster any more")

    async def stream_logs(
        self, cluster_name: str, instance_id: str, *, tail: int, follow: bool
    ) -> AsyncGenerator[list[str], None]:
        """The instance's log from its agent, in the chunks it sends (each a list of lines, maybe empty:
        the agent answers a follow at once, before the instance writes anything); with `follow`, until
        the caller stops iterating. The first chunk, or the agent's error, comes within
        AGENT_REPLY_TIMEOUT_S."""
        nc = _require_nats(self._nats)
        inbox = nc.new_inbox()
        cancel_subject = subjects.instance_logs_cancel(cluster_name, uuid.uuid4().hex) if follow else None
        subscription = await nc.subscribe(inbox)
        request = InstanceLogsRequest(
            instanceId=instance_id, tail=tail, follow=follow, cancelSubject=cancel_subject
        )
        ended = False
        try:
            await nc.publish(
                subjects.instance_logs(cluster_name),
                request.model_dump_json(by_alias=True).encode(),
                reply=inbox,
            )
            received = False
            while True:
                timeout_s = FOLLOW_IDLE_TIMEOUT_S if follow and received else AGENT_REPLY_TIMEOUT_S
                try:
                    msg = await subscription.next_msg(timeout=timeout_s)
                except TimeoutError:
                    if not received:
                        raise UnavailableError(
                            f"The agent of cluster '{cluster_name}' did not answer within {timeout_s:g}s"
                        ) from None
                    return
                received = True
                chunk = InstanceLogsChunk.model_validate_json(msg.data)
                if chunk.error == "not-found":
                    raise NotFoundError(
                        f"The agent of cluster '{cluster_name}' has no logs of instance '{instance_id}'"
                    )
                yield chunk.lines
                if chunk.end:
                    ended = True
                    return
        finally:
            if cancel_subject is not None and not ended:
                # the HTTP client went away: tell the agent to stop following. A publish only
                # buffers (it does not wait for the network), so it is done even while the response
                # is being cancelled, which cancels every wait here.
                with contextlib.suppress(Exception):
                    await nc.publish(cancel_subject, b"")
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
