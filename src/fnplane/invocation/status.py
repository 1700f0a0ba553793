"""`GET /v2/nvcf/pexec/status/{reqId}` (and the exec form) from any gateway, and large-result downloads.

Detached requests live in the status bucket, written by the worker: in-progress records (with the
last progress) and then the final result. A status call long-polls the record for NVCF-POLL-SECONDS:
the final result (200 / 302 / problem) ends it, a progress change answers 202 at once, the window's
end answers 202. A delivered final result is removed, as NVCF does (later polls get 404), except
one stored as an object (over the worker's inline limit): the gateway cannot tell a complete download
from one the client cut off halfway, so such a result stays (record and object) until the status
record expires, and a client whose download broke off polls again.

Requests queued detached (`Prefer: respond-async`, an `Idempotency-Key`; submissions.py) have a
record from the start: `pending-evaluation` until a worker takes it (202 with that NVCF-STATUS), and
`rejected` once cancelled (410 problem+json with `NVCF-STATUS: rejected`, until the record expires).
A final record with an idempotency key is settled under its key before it is answered
(idempotency.py), so a retry with the key replays it after the record is gone.
"""

from __future__ import annotations

import base64
import contextlib
import json

from fnplane.bus.buckets import Buckets
from fnplane.invocation import idempotency, observe
from fnplane.invocation.access import CachedAccess
from fnplane.invocation.exec_envelope import exec_document
from fnplane.invocation.http import Request, invocation_headers, send_bytes, send_json
from fnplane.invocation.routing import is_uuid, poll_seconds
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.shared import errors, scopes, subjects
from fnplane.shared.headers import HOP_BY_HOP
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem_for
from fnplane.shared.wire import RequestStatus, StatusRecord

# the record will still change: a status call waits for it
WAITING = frozenset({RequestStatus.IN_PROGRESS, RequestStatus.PENDING_EVALUATION})


class StatusEndpoints:
    def __init__(
        self, settings: GatewaySettings, *, access: CachedAccess, stores: Buckets, signer: UrlSigner
    ) -> None:
        self._settings = settings
        self._access = access
        self._stores = stores
        self._signer = signer

    def _location(self, request: Request, request_id: str) -> str:
        s = self._settings
        return self._signer.result_url(request.base_url(s.public_url), request_id, s.result_url_ttl_s)

    async def authorized_record(self, request: Request, request_id: str) -> StatusRecord:
        """The request's record if the caller's account made it (scope invoke_function); else 404."""
        bearer = request.bearer()
        # the credential and its scope first: a bad bearer is 401 and a missing scope 403, whether
        # or not the request exists
        await self._access.grant(bearer, scopes.INVOKE_FUNCTION)
        if not is_uuid(request_id):
            raise errors.NotFoundError(f"request {request_id} not found")
        version_id = await self._stores.version_of(request_id)
        record = await self._stores.get_status(version_id, request_id) if version_id else None
        if record is None:
            raise errors.NotFoundError(f"request {request_id} not found")
        grant = await self._access.request_grant(
            bearer, scopes.INVOKE_FUNCTION, request_id, record.function_id, record.version_id
        )
        if grant.nca_id != record.nca_id:
            raise errors.NotFoundError(f"request {request_id} not found")
        observe.located(record.function_id, record.version_id)
        return record

    async def wait(self, record: StatusRecord, poll_s: float) -> StatusRecord:
        """The record once it is final or its progress changed, or as it is when the window ends
        (settled under its idempotency key when final)."""
        if record.status in WAITING:
            latest = record
            async with contextlib.aclosing(
                self._stores.watch_status(record.version_id, record.request_id, poll_s)
            ) as updates:
                async for current in updates:
                    latest = current
                    if current.status not in WAITING:
                        break
                    if current.percent_complete != record.percent_complete:
                        break
            record = latest
        await idempotency.settle(self._stores, record)
        return record

    async def pexec_status(self, request: Request, request_id: str) -> None:
        record = await self.authorized_record(request, request_id)
        record = await self.wait(record, poll_seconds(request.headers, sse_default=False))
        # a HEAD sees the answer without taking it: the result stays for the GET
        await self.send_pexec(request, request_id, record, forget=request.method != "HEAD")

    async def _send_rejected(self, request: Request, request_id: str) -> None:
        error = errors.GoneError(f"request {request_id} was cancelled")
        status, doc = problem_for(error, request.path)
        headers = invocation_headers(request_id, status, RequestStatus.REJECTED)
        headers.append((b"content-type", PROBLEM_CONTENT_TYPE.encode()))
        await send_bytes(request.send, status, json.dumps(doc).encode(), headers)

    async def send_pexec(
        self, request: Request, request_id: str, record: StatusRecord, *, forget: bool = True
    ) -> None:
        """Answer with the record as pexec does; `forget`: a delivered result is removed (not for a
        replay of an idempotency key's result, which its own record keeps)."""
        send = request.send
        if record.status is RequestStatus.REJECTED:
            await self._send_rejected(request, request_id)
            return
        if record.status in WAITING or record.response is None:
            headers = invocation_headers(
                request_id,
                202,
                RequestStatus.PENDING_EVALUATION
                if record.status is RequestStatus.PENDING_EVALUATION
                else None,
            )
            body = b""
            if record.percent_complete is not None:
                headers.append((b"nvcf-percent-complete", str(record.percent_complete).encode()))
            if record.partial_response is not None:
                body = json.dumps(record.partial_response).encode()
                headers.append((b"content-type", b"application/json"))
            await send_bytes(send, 202, body, headers)
            return
        response = record.response
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
        ]
        headers += invocation_headers(request_id, response.status)
        if record.percent_complete is not None:
            headers.append((b"nvcf-percent-complete", str(record.percent_complete).encode()))
        if response.large:
            url = self._location(request, request_id)
            headers.append((b"location", url.encode()))
            await send_bytes(send, 302, b"", headers)
            if forget:
                await self._stores.delete_status(record.version_id, request_id)
            return
        if response.body_b64 is not None:
            await send_bytes(send, response.status, base64.b64decode(response.body_b64), headers)
        elif response.object_name is not None:
            info = await self._stores.result_info(record.version_id, response.object_name)
            headers.append((b"content-length", str(info.size).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in self._stores.iter_object(info):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return  # kept for a retried download (see the module docstring); both expire
        if forget:
            await self._stores.delete_status(record.version_id, request_id)

    async def exec_status(self, request: Request, request_id: str) -> None:
        record = await self.authorized_record(request, request_id)
        record = await self.wait(record, poll_seconds(request.headers, sse_default=False))
        await self.send_exec(request, request_id, record, forget=request.method != "HEAD")

    async def send_exec(
        self, request: Request, request_id: str, record: StatusRecord, *, forget: bool = True
    ) -> None:
        """Answer with the record in the exec envelope (`status` pending-evaluation while queued,
        rejected with 410 once cancelled)."""
        response = record.response
        if record.status is RequestStatus.REJECTED:
            doc = {"reqId": request_id, "status": RequestStatus.REJECTED.value}
            rejected = invocation_headers(request_id, 410, RequestStatus.REJECTED)
            await send_json(request.send, 410, doc, rejected)
            return
        nvcf = None
        if record.status in WAITING or response is None:
            headers = (
                [("NVCF-PERCENT-COMPLETE", str(record.percent_complete))] if record.percent_complete else []
            )
            body = (
                json.dumps(record.partial_response).encode() if record.partial_response is not None else b""
            )
            status, doc = exec_document(request_id, 202, headers, body, None)
            if record.status is RequestStatus.PENDING_EVALUATION:
                nvcf = RequestStatus.PENDING_EVALUATION
                doc["status"] = nvcf.value
        elif response.large:
            url = self._location(request, request_id)
            status, doc = exec_document(request_id, 302, [], b"", url)
        else:
            if response.body_b64 is not None:
                body = base64.b64decode(response.body_b64)
            else:
                assert response.object_name is not None
                info = await self._stores.result_info(record.version_id, response.object_name)
                body = b"".join([c async for c in self._stores.iter_object(info)])
            status, doc = exec_document(request_id, response.status, response.headers, body, None)
        if status != 202 and forget:
            await self._stores.delete_status(record.version_id, request_id)
        await send_json(request.send, status, doc, invocation_headers(request_id, status, nvcf))

    async def download_result(self, request: Request, request_id: str) -> None:
        """The signed Location of a large result: the zip NVCF's worker would have uploaded."""
        self._signer.verify("GET", request.path, request.query())
        version_id = await self._stores.version_of(request_id)
        if version_id is None:
            raise errors.NotFoundError(f"result of request {request_id} not found")
        info = await self._stores.result_info(version_id, subjects.result_object(request_id))
        headers = [
            (b"content-type", b"application/zip"),
            (b"content-disposition", f'attachment; filename="{request_id}.zip"'.encode()),
            (b"content-length", str(info.size).encode()),
        ]
        await request.send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in self._stores.iter_object(info):
            await request.send({"type": "http.response.body", "body": chunk, "more_body": True})
        await request.send({"type": "http.response.body", "body": b""})
