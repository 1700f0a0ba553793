"""Requests queued whole, without a caller on the response stream: asynchronous submission
(`Prefer: respond-async`), idempotency keys, and cancellation.

    pexec / exec + Prefer: respond-async   -> 202 at once: NVCF-REQID, NVCF-STATUS pending-evaluation,
                                              Preference-Applied, Location of the status endpoint
    pexec / exec / direct POST|PUT|PATCH + Idempotency-Key
                                           -> the first request with the key runs; later ones join it
                                              (same NVCF-REQID, its outcome or its 202) or replay it
    DELETE /v2/nvcf/{pexec|exec}/status/{id}
                                           -> 204; the request never runs, or its call is aborted

Both kinds are queued `detached` (shared/wire.py): the body is read whole first (up to
max_detached_body_bytes) and travels in the queued message, the gateway writes a `pending-evaluation`
status record before it queues, and the worker writes in-progress and then the result into that record.
A caller that waits (an idempotent request without respond-async) long-polls the record for its poll
window, exactly as a status call does (status.py), and gets 202 when the window ends: the request
stays queued rather than being purged with a 504, so a retry can join it. A client disconnect does not
cancel an idempotent request either: a retry after a broken connection is what the key is for.

Cancel marks the status record `rejected` (compare-and-set: a result written first wins, answered 409),
purges the queued message and broadcasts an explicit cancel; a worker that already holds the message
finds the record rejected before it calls the function, and one that runs it cancels the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from enum import StrEnum

from fnplane.bus.buckets import Buckets
from fnplane.invocation import idempotency
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.http import Request, invocation_headers, send_bytes, send_json
from fnplane.invocation.invocations import inference_call, read_exec
from fnplane.invocation.invoke import Call, build_envelope
from fnplane.invocation.preferences import PREFERENCE_APPLIED, wants_async
from fnplane.invocation.routing import asset_ids, poll_seconds
from fnplane.invocation.service import InvocationService
from fnplane.invocation.status import StatusEndpoints
from fnplane.shared import errors, wire
from fnplane.shared.wire import InvocationMode, RequestStatus, StatusRecord
from fnplane.telemetry import logs

# methods an Idempotency-Key applies to on direct invocation (the others are idempotent already)
KEYED_METHODS = frozenset({"POST", "PUT", "PATCH"})
# a key claimed by a gateway that has not yet queued its request: look again this often, this long
CLAIM_SETTLE_S = 0.05
CLAIM_WAIT_S = 2.0


class Form(StrEnum):
    """How the caller gets its answer: pexec's, the exec envelope, or direct pass-through."""

    PEXEC = "pexec"
    EXEC = "exec"
    DIRECT = "direct"


def applies(request: Request, *, direct: bool = False) -> bool:
    """Whether this request is queued whole (respond-async on pexec/exec, or an idempotency key)."""
    if idempotency.HEADER in request.headers:
        return not direct or request.method in KEYED_METHODS
    # the header dict first: most requests have no Prefer header to parse
    return not direct and "prefer" in request.headers and wants_async(request.raw_headers)


class Submissions:
    def __init__(
        self, service: InvocationService, *, bus: RequestBus, stores: Buckets, status: StatusEndpoints
    ) -> None:
        self._service = service
        self._bus = bus
        self._stores = stores
        self._status = status

    # --- endpoints ---------------------------------------------------------------------------------

    async def pexec(self, request: Request, function_id: str, version_id: str | None) -> None:
        bearer = request.bearer()
        key = idempotency.parse_key(request.headers)
        poll_s = poll_seconds(request.headers, sse_default=True)
        ids = asset_ids(request.headers.get("nvcf-input-asset-references"))
        admitted = await self._service.admit(bearer, function_id, version_id)
        call = await inference_call(self._service, request, admitted, function_id, poll_s, ids)
        # read after admission: an unauthorized caller's body is never read
        body = await request.read_body(self._service.settings.max_detached_body_bytes)
        call = dataclasses.replace(call, body=body)
        await self._run(request, call, body, key, request.path_and_query, Form.PEXEC)

    async def exec_(self, request: Request, function_id: str, version_id: str | None) -> None:
        bearer = request.bearer()
        key = idempotency.parse_key(request.headers)
        # admitted before the body is read, as without a key
        admitted = await self._service.admit(bearer, function_id, version_id)
        poll_s, ids, body = await read_exec(self._service, request)
        call = await inference_call(self._service, request, admitted, function_id, poll_s, ids, body)
        await self._run(request, call, body, key, request.path_and_query, Form.EXEC)

    async def direct(self, request: Request, function_id: str, version_id: str | None) -> None:
        """Direct invocation with an Idempotency-Key (POST, PUT, PATCH): the function's answer passes
        through untouched, as without a key."""
        key = idempotency.parse_key(request.headers)
        grant, target = await self._service.admit(request.bearer(), function_id, version_id)
        poll_s = poll_seconds(request.headers, sse_default=False)
        body = await request.read_body(self._service.settings.max_detached_body_bytes)
        path = request.path_and_query
        call = Call(grant, target, function_id, InvocationMode.DIRECT, request.method, path, poll_s)
        target_id = f"{function_id}/{version_id or ''} {path}"
        await self._run(request, call, body, key, target_id, Form.DIRECT)

    async def cancel(self, request: Request, request_id: str) -> None:
        """DELETE /v2/nvcf/pexec/status/{requestId}: 204, then the status is 410 `rejected`."""
        record = await self._status.authorized_record(request, request_id)
        before = await self._stores.reject_status(record.version_id, request_id)
        if before is None:
            raise errors.NotFoundError(f"request {request_id} not found")
        if before.status is not RequestStatus.REJECTED:
            if before.is_final:
                raise errors.ConflictError(
                    f"request {request_id} already finished ({before.status.value}); fetch its result "
                    "from the status endpoint"
                )
            await self._bus.cancel(record.version_id, request_id, explicit=True)
            await idempotency.settle(self._stores, wire.rejected(before))
        await send_bytes(request.send, 204, b"", invocation_headers(request_id, 204, RequestStatus.REJECTED))

    # --- one request -------------------------------------------------------------------------------

    async def _run(
        self,
        request: Request,
        call: Call,
        body: bytes,
        key: str | None,
        target: str,
        form: Form,
    ) -> None:
        respond_async = form is not Form.DIRECT and wants_async(request.raw_headers)
        request_id = str(uuid.uuid4())
        logs.annotate(
            request_id=request_id,
            function_id=call.function_id,
            function_version_id=call.target.version_id,
            account=call.grant.nca_id,
        )
        bucket_key = None
        if key is not None:
            bucket_key = idempotency.bucket_key(call.grant.nca_id, key)
            fp = idempotency.fingerprint(request.method, target, body)
            claim = wire.IdempotencyRecord(
                fingerprint=fp,
                request_id=request_id,
                function_id=call.function_id,
                version_id=call.target.version_id,
                nca_id=call.grant.nca_id,
            )
            first = await self._stores.claim_idempotency(bucket_key, claim)
            if first is not None:
                idempotency.check_same(first, fp)
                await self._join(request, first, bucket_key, call.poll_s, form, respond_async)
                return
        try:
            record = await self._submit(request, call, body, request_id, bucket_key)
        except errors.FnplaneError:
            if bucket_key is not None:  # never queued: a retry with the key may run it
                await self._stores.release_idempotency(bucket_key)
            raise
        if respond_async:
            await self._accepted(request, record, form)
            return
        record = await self._status.wait(record, call.poll_s)
        await self._answer(request, record, form)

    async def _submit(
        self, request: Request, call: Call, body: bytes, request_id: str, bucket_key: str | None
    ) -> StatusRecord:
        """Queue the request detached, its pending record written first (any gateway can answer for
        it, and a cancel finds it, from the moment the client has its id)."""
        s = self._service.settings
        envelope = build_envelope(
            self._bus,
            s,
            request,
            call,
            request_id,
            time.time(),
            length=len(body),
            more=False,
            detached=True,
            idempotency=bucket_key,
        )
        record = StatusRecord(
            request_id=request_id,
            function_id=call.function_id,
            version_id=call.target.version_id,
            nca_id=call.grant.nca_id,
            status=RequestStatus.PENDING_EVALUATION,
            idempotency=bucket_key,
        )
        # any gateway finds the record by the request id alone (status, position, cancel)
        await self._stores.remember_version(request_id, call.target.version_id)
        await self._stores.put_status(record)
        try:
            await self._bus.publish(envelope, body)
        except errors.FnplaneError:
            await self._stores.delete_status(call.target.version_id, request_id)
            raise
        return record

    async def _join(
        self,
        request: Request,
        first: wire.IdempotencyRecord,
        bucket_key: str,
        poll_s: float,
        form: Form,
        respond_async: bool,
    ) -> None:
        """A request with a key already used for the same request: its outcome, never a second run."""
        request_id = first.request_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_WAIT_S
        while True:
            if first.status is not None:  # settled: replay what the first caller got
                replay = StatusRecord(
                    request_id=request_id,
                    function_id=first.function_id,
                    version_id=first.version_id,
                    nca_id=first.nca_id,
                    status=first.status,
                    response=first.response,
                    percent_complete=first.percent_complete,
                    idempotency=bucket_key,
                )
                await self._answer(request, replay, form, forget=False)
                return
            record = await self._stores.get_status(first.version_id, request_id)
            if record is not None:
                break
            # claimed, but its gateway has not written the record yet, or it was answered and forgotten
            # just now (then the key's record is settled): look again
            if loop.time() >= deadline:
                raise errors.NotFoundError(
                    f"the request of this {idempotency.HEADER_NAME} ({request_id}) is gone: its result "
                    "expired before it was fetched"
                )
            await asyncio.sleep(CLAIM_SETTLE_S)
            latest = await self._stores.get_idempotency(bucket_key)
            if latest is None or latest.request_id != request_id:
                # released: the first request could not be queued (a full queue, NATS down)
                raise errors.UnavailableError(
                    f"the first request with this {idempotency.HEADER_NAME} was not queued; retry",
                    retry_after_s=1,
                )
            first = latest
        if respond_async and not record.is_final:
            await self._accepted(request, record, form)
            return
        record = await self._status.wait(record, poll_s)
        await self._answer(request, record, form)

    async def _answer(
        self, request: Request, record: StatusRecord, form: Form, *, forget: bool = True
    ) -> None:
        """As a status call answers (direct: the stored answer is the function's own, untouched)."""
        if form is Form.EXEC:
            await self._status.send_exec(request, record.request_id, record, forget=forget)
        else:
            await self._status.send_pexec(request, record.request_id, record, forget=forget)

    async def _accepted(self, request: Request, record: StatusRecord, form: Form) -> None:
        """202 at once: the request id, its status now, where to poll."""
        request_id = record.request_id
        headers = invocation_headers(request_id, 202, record.status)
        headers.append(PREFERENCE_APPLIED)
        base = request.base_url(self._service.settings.public_url)
        headers.append((b"location", f"{base}/v2/nvcf/{form.value}/status/{request_id}".encode()))
        if form is Form.EXEC:
            await send_json(request.send, 202, {"reqId": request_id, "status": record.status.value}, headers)
        else:
            await send_bytes(request.send, 202, b"", headers)
