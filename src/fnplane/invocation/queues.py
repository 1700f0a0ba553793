"""Queues (nvcf-api.md 1.4): depth per function / version and the position of one request.

Depth is the version consumer's num_pending. A request's position comes from its message's stream
sequence against the consumer's last delivered sequence; the version of a detached request (202,
respond-async) is in the status bucket, that of one still waited for on some gateway is found with a
`locate` broadcast.
"""

from __future__ import annotations

from fnplane.bus.buckets import Buckets
from fnplane.invocation.access import QUEUE_VISIBLE, CachedAccess
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.http import Request, send_json
from fnplane.invocation.routing import is_uuid
from fnplane.shared import errors, scopes
from fnplane.shared.models.access import AccessGrant, VersionTarget

MAX_POSITION = 1000


class QueueEndpoints:
    def __init__(self, *, access: CachedAccess, bus: RequestBus, stores: Buckets) -> None:
        self._access = access
        self._bus = bus
        self._stores = stores

    async def depth(self, request: Request, function_id: str, version_id: str | None = None) -> None:
        def queued(grant: AccessGrant) -> list[VersionTarget]:
            if grant.public:  # as NVCF's QueueController
                raise errors.BadRequestError(
                    f"Function '{function_id}' is public: its queues are not shown",
                    field="functionId",
                    rule="not a public function",
                )
            versions = [v for v in grant.versions if version_id is None or v.version_id == version_id]
            versions = [v for v in versions if v.status in QUEUE_VISIBLE]
            if not versions:
                raise errors.NotFoundError("Queue not found - Function is likely not deployed")
            return versions

        _, versions = await self._access.grant_for(
            request.bearer(), scopes.QUEUE_DETAILS, function_id, version_id, queued
        )
        queues = []
        for v in versions:
            queues.append(
                {
                    "functionVersionId": v.version_id,
                    "functionName": v.function_name,
                    "functionStatus": v.status,
                    "queueDepth": await self._bus.queue_depth(v.version_id),
                }
            )
        await send_json(request.send, 200, {"functionId": function_id, "queues": queues})

    async def position(self, request: Request, request_id: str) -> None:
        bearer = request.bearer()
        # the credential and its scope first: 401 / 403 whether or not the request exists
        await self._access.grant(bearer, scopes.QUEUE_DETAILS)
        if not is_uuid(request_id):
            raise errors.NotFoundError(f"request {request_id} not found")
        # a detached request (202, respond-async) has a record; only one still waited for has none
        indexed = await self._stores.version_of(request_id)
        record = await self._stores.get_status(indexed, request_id) if indexed else None
        located = (record.version_id, record.function_id) if record is not None else None
        if located is None:
            located = await self._bus.locate(request_id)
        if located is None:
            raise errors.NotFoundError(f"request {request_id} not found")
        version_id, function_id = located
        # 404 unless the caller may see the request's function and (when known) made the request
        grant = await self._access.request_grant(
            bearer, scopes.QUEUE_DETAILS, request_id, function_id, version_id
        )
        if record is not None and grant.nca_id != record.nca_id:
            raise errors.NotFoundError(f"request {request_id} not found")
        pos = await self._bus.queue_position(version_id, request_id)
        if pos is None:
            raise errors.NotFoundError(f"request {request_id} is no longer queued")
        await send_json(
            request.send,
            200,
            {
                "functionId": function_id,
                "functionVersionId": version_id,
                "positionInQueue": min(pos, MAX_POSITION),
            },
        )
