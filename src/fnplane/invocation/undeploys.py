"""What a gateway does when it hears that a version was undeployed (`wire.Undeployed`).

    control plane -- VERSIONS_UNDEPLOYED -->  RequestBus  -->  UndeployedQueues.handle(event)
                                                                 1. bus.take_undelivered(version)
                                                                 2. each taken request answered 404

The requests still in the version's queue that no worker was given will never run: its instances are
stopping (each worker finishes what it holds). NVCF deletes the queue with the deployment. Here every
gateway that hears the notice takes those requests off the queue (a delete decides which gateway
answers each), and answers each as a worker would have: a 404 problem to the caller waiting on its
reply inbox (whichever gateway holds it; a gRPC session that waits for a worker ends NOT_FOUND), and
an `errored` status record holding the same problem for a caller that polls (a detached request, or a
pexec call past its poll window). A cancel that came first (`rejected`) stays.

A notice missed while the gateway was disconnected is not repeated: such requests end as before (their
poll window, or the queue's hour).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

from fnplane.bus.buckets import Buckets
from fnplane.invocation.bus import RequestBus
from fnplane.shared import errors, wire
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem_for

log = logging.getLogger(__name__)


class UndeployedQueues:
    def __init__(self, bus: RequestBus, stores: Buckets) -> None:
        self._bus = bus
        self._stores = stores
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, event: wire.Undeployed) -> None:
        task = asyncio.create_task(self._answer_queued(event), name=f"undeployed-{event.version_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_queued(self, event: wire.Undeployed) -> None:
        try:
            taken = await self._bus.take_undelivered(event.version_id)
        except Exception as exc:  # the bus is closing or the server is gone: they end as before
            log.warning("queue of undeployed version %s not emptied: %r", event.version_id, exc)
            return
        if taken:
            log.info("version %s undeployed: %d queued request(s) answered 404", event.version_id, len(taken))
        error = errors.NotFoundError(
            f"function {event.function_id} version {event.version_id} was undeployed before the request ran"
        )
        for envelope in taken:
            try:
                await self._answer(envelope, error)
            except Exception as exc:  # one answer failing must not stop the others
                log.warning("request %s of an undeployed version not answered: %r", envelope.request_id, exc)

    async def _answer(self, envelope: wire.Envelope, error: errors.FnplaneError) -> None:
        status, document = problem_for(error, _instance(envelope))
        body = json.dumps(document).encode()
        headers = [("Content-Type", PROBLEM_CONTENT_TYPE)]
        if not envelope.detached:
            await self._bus.answer(envelope, wire.Head(status, headers, end=True), body)
        if envelope.detached or envelope.mode is wire.InvocationMode.PEXEC:
            record = wire.StatusRecord(
                request_id=envelope.request_id,
                function_id=envelope.function_id,
                version_id=envelope.version_id,
                nca_id=envelope.nca_id,
                status=wire.RequestStatus.ERRORED,
                response=wire.StoredResponse(status, headers, base64.b64encode(body).decode()),
                idempotency=envelope.idempotency,
            )
            await self._stores.put_status_unless_rejected(record)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)


def _instance(envelope: wire.Envelope) -> str:
    """The problem's `instance`: the path the client called, as near as the envelope says."""
    if envelope.mode is wire.InvocationMode.PEXEC:
        return f"/v2/nvcf/pexec/functions/{envelope.function_id}"
    return envelope.path.partition("?")[0]
