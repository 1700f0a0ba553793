"""The request path's wire: every message between a gateway (or the gRPC proxy) and a worker.

Defined, encoded and decoded here and nowhere else. Pure: no I/O and no NATS client; the bus modules
move the bytes, `shared/subjects.py` names the subjects and `shared/topology.py` the streams and
buckets. A message is NATS headers (`dict[str, str]`) plus a payload (`bytes`).

    gateway                                                   worker
      | -- queued request -> version's work queue ---------->   |  Envelope (header), first body bytes
      | <- body pull (request/reply on the body inbox) ------   |  offset held -> BodyChunk | refusal
      | <- head -------------------- response inbox ---------   |  Head (header), first response bytes
      | <- chunk (its reply subject is the credit inbox) ----   |  response bytes
      | -- credit (reply to a chunk) ----------------------->   |  chunks granted
      | <- heartbeat -----------------------------------------  |  the worker still works on it
      | <- end -----------------------------------------------  |  error text if the response broke off
      | -- cancel -> version's cancel subject -------------->   |  request id (+ explicit: DELETE)
      status record: the status bucket's value of a detached (202) request, written by the worker
      idempotency record: the idempotency bucket's value of one Idempotency-Key, written by gateways

A request queued with `detached` (`Prefer: respond-async`, or an `Idempotency-Key`) has no caller
waiting on its reply inbox: the worker writes its status record from the start (in-progress before it
calls the function, then the final result) and sends no response stream. A status record that says
`rejected` (cancelled) is never overwritten: a worker that finds it stops.

Every response-stream message names its kind and the delivery attempt it belongs to in one header
(`Fnplane-Kind: data 2`): a gateway ignores messages of an earlier delivery of the same request.
Flow control: at most `Head.window` chunks are unanswered; the gateway answers every
`credit_batch(window)`-th chunk with the number of chunks it grants.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from fnplane.shared.errors import FnplaneError

# --- header names (the only place they are spelled) ----------------------------------------------

HDR_MSG_ID = "Nats-Msg-Id"  # JetStream de-duplication of a retried publish
HDR_ENVELOPE = "Fnplane-Envelope"  # Envelope JSON on a queued request
HDR_KIND = "Fnplane-Kind"  # "<kind> <attempt>" on every response-stream message
HDR_HEAD = "Fnplane-Head"  # Head JSON on a head message
HDR_ERROR = "Fnplane-Error"  # an end that broke off, or a refused body pull
HDR_OFFSET = "Fnplane-Offset"  # body pull: bytes the worker already holds
HDR_EOF = "Fnplane-Eof"  # body pull reply: "1" when this chunk is the last
HDR_STATUS = "Status"  # JetStream's status code on pull responses (100, 404, 408, 409)
HDR_CANCEL = "Fnplane-Cancel"  # "explicit" on a cancel a client asked for (DELETE), not a disconnect


class WireError(FnplaneError):
    """A message that does not follow this module's format."""


class Kind(StrEnum):
    HEAD = "head"
    DATA = "data"
    END = "end"
    ALIVE = "alive"


class InvocationMode(StrEnum):
    PEXEC = "pexec"  # NVCF "compatibility mode": 202 timer, progress, 302 large results, problem+json
    DIRECT = "direct"  # Host-header / function-id header invocation: pure pass-through


class RequestStatus(StrEnum):
    FULFILLED = "fulfilled"
    IN_PROGRESS = "in-progress"
    ERRORED = "errored"
    PENDING_EVALUATION = "pending-evaluation"
    REJECTED = "rejected"


def nvcf_status(status_code: int) -> RequestStatus:
    """`fulfilled` for 2xx/3xx except 202, `in-progress` for 202, `errored` otherwise."""
    if status_code == 202:
        return RequestStatus.IN_PROGRESS
    if 200 <= status_code < 400:
        return RequestStatus.FULFILLED
    return RequestStatus.ERRORED


# --- the queued request --------------------------------------------------------------------------


class AssetReference(msgspec.Struct, frozen=True):
    asset_id: str = msgspec.field(name="assetId")
    object_name: str = msgspec.field(name="objectName")
    content_type: str | None = msgspec.field(default=None, name="contentType")
    # a signed GET of the asset's content at a gateway (empty: read `object_name` from the bus)
    url: str = ""


class Envelope(msgspec.Struct, omit_defaults=True):
    """What a worker needs to run one request; the first body bytes travel as the payload."""

    request_id: str = msgspec.field(name="requestId")
    function_id: str = msgspec.field(name="functionId")
    version_id: str = msgspec.field(name="functionVersionId")
    nca_id: str = msgspec.field(name="ncaId")
    mode: InvocationMode
    method: str
    # path and query exactly as the container must see them
    path: str
    # client headers after the gateway removed Authorization and hop-by-hop headers
    headers: list[tuple[str, str]]
    reply_to: str = msgspec.field(name="replyTo")
    body_from: str = msgspec.field(name="bodyFrom")
    # epoch seconds when the gateway accepted the request; the poll window counts from here
    request_time: float = msgspec.field(name="requestTime")
    poll_s: float = msgspec.field(name="pollSeconds")
    # epoch seconds after which nobody waits for the result (NVCF: an hour): a detached request still
    # running then is stopped and its slot freed
    expires_at: float = msgspec.field(name="expiresAt")
    function_name: str = msgspec.field(default="", name="functionName")
    subject: str = ""
    body_length: int | None = msgspec.field(default=None, name="bodyLength")
    body_more: bool = msgspec.field(default=False, name="bodyMore")
    assets: list[AssetReference] = msgspec.field(default_factory=list)
    max_response_bytes: int = msgspec.field(default=5 * 1024 * 1024, name="maxResponseBytes")
    invocation_region: str = msgspec.field(default="local", name="invocationRegion")
    # the worker sends heartbeats at least this often (a third of the gateway's worker-silence
    # timeout); None: the worker's own interval
    heartbeat_s: float | None = msgspec.field(default=None, name="heartbeatSeconds")
    # nobody waits on reply_to: results go to the status record from the start (respond-async,
    # idempotency keys); the worker never sends a response stream for it
    detached: bool = False
    # the idempotency bucket's key of the request's Idempotency-Key (copied into its status record)
    idempotency: str | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)
_encode = msgspec.json.encode


def encode_request(envelope: Envelope) -> dict[str, str]:
    """Headers of the queued request (its payload is the first body bytes)."""
    return {HDR_MSG_ID: envelope.request_id, HDR_ENVELOPE: _encode(envelope).decode()}


def decode_request(headers: dict[str, str] | None) -> Envelope:
    raw = (headers or {}).get(HDR_ENVELOPE)
    if raw is None:
        raise WireError("queued request without an envelope")
    try:
        return _envelope_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed envelope: {exc}") from None


# --- request body pulls --------------------------------------------------------------------------


def encode_body_pull(offset: int) -> dict[str, str]:
    return {HDR_OFFSET: str(offset)}


def decode_body_pull(headers: dict[str, str] | None) -> int:
    raw = (headers or {}).get(HDR_OFFSET, "0")
    if not raw.isdigit():
        raise WireError(f"body pull with a bad offset {raw!r}")
    return int(raw)


def encode_body_chunk(data: bytes, eof: bool) -> tuple[dict[str, str] | None, bytes]:
    return ({HDR_EOF: "1"} if eof else None), data


def encode_body_refusal(detail: str) -> tuple[dict[str, str], bytes]:
    return {HDR_ERROR: _one_line(detail)}, b""


class BodyChunk(msgspec.Struct):
    data: bytes
    eof: bool


def decode_body_reply(headers: dict[str, str] | None, data: bytes) -> BodyChunk:
    """The next body chunk; WireError with the gateway's reason when it refused."""
    headers = headers or {}
    if HDR_ERROR in headers:
        raise WireError(headers[HDR_ERROR])
    return BodyChunk(data, headers.get(HDR_EOF) == "1")


# --- the response stream -------------------------------------------------------------------------


class Head(msgspec.Struct, omit_defaults=True):
    """Status and headers of the response; the message's payload is its first body bytes."""

    status: int
    headers: list[tuple[str, str]]
    # chunks the worker sends before it waits for credit
    window: int = 1
    # the head is the whole response
    end: bool = False
    # the result is this request's zip in the object store: answer 302 with a signed Location
    large_result: bool = msgspec.field(default=False, name="largeResult")


_head_decoder = msgspec.json.Decoder(Head)


class HeadMessage(msgspec.Struct):
    attempt: str
    head: Head
    body: bytes


class ChunkMessage(msgspec.Struct):
    attempt: str
    data: bytes


class EndMessage(msgspec.Struct):
    attempt: str
    error: str | None


class AliveMessage(msgspec.Struct):
    attempt: str


ResponseMessage = HeadMessage | ChunkMessage | EndMessage | AliveMessage


def kind_header(kind: Kind, attempt: int | str) -> dict[str, str]:
    """The headers of a chunk or heartbeat of `attempt` (built once per request, reused per message)."""
    return {HDR_KIND: f"{kind} {attempt}"}


def encode_head(head: Head, attempt: int | str) -> dict[str, str]:
    return {HDR_KIND: f"{Kind.HEAD} {attempt}", HDR_HEAD: _encode(head).decode()}


def encode_end(attempt: int | str, error: str | None = None) -> dict[str, str]:
    headers = {HDR_KIND: f"{Kind.END} {attempt}"}
    if error:
        headers[HDR_ERROR] = _one_line(error)
    return headers


def decode_response(headers: dict[str, str] | None, data: bytes) -> ResponseMessage:
    value = (headers or {}).get(HDR_KIND)
    if value is None:
        raise WireError("response message without a kind")
    kind, _, attempt = value.partition(" ")
    if kind == Kind.DATA:
        return ChunkMessage(attempt, data)
    if kind == Kind.HEAD:
        assert headers is not None
        try:
            head = _head_decoder.decode(headers.get(HDR_HEAD, ""))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WireError(f"malformed head: {exc}") from None
        return HeadMessage(attempt, head, data)
    if kind == Kind.END:
        assert headers is not None
        return EndMessage(attempt, headers.get(HDR_ERROR))
    if kind == Kind.ALIVE:
        return AliveMessage(attempt)
    raise WireError(f"unknown response message kind {kind!r}")


def credit_batch(window: int) -> int:
    """Chunks a gateway answers at once: a quarter of the window, so the worker always keeps three
    quarters of it and a fast stream costs a quarter of the replies."""
    return max(1, window // 4)


def encode_credit(chunks: int) -> bytes:
    return b"" if chunks == 1 else str(chunks).encode()


def decode_credit(data: bytes) -> int:
    """Chunks granted; an empty reply grants one."""
    return int(data) if data and data.isdigit() else 1


# --- cancellation --------------------------------------------------------------------------------


def encode_cancel(request_id: str) -> bytes:
    return request_id.encode()


def decode_cancel(data: bytes) -> str:
    return data.decode(errors="replace")


CANCEL_EXPLICIT = "explicit"


def encode_explicit_cancel(request_id: str) -> tuple[dict[str, str], bytes]:
    """A cancel the client asked for (DELETE .../status/{id}): it also stops a detached request, which
    a cancel after a client disconnect or a gateway timeout leaves running."""
    return {HDR_CANCEL: CANCEL_EXPLICIT}, encode_cancel(request_id)


def is_explicit_cancel(headers: dict[str, str] | None) -> bool:
    return (headers or {}).get(HDR_CANCEL) == CANCEL_EXPLICIT


# --- the status record of a detached request -----------------------------------------------------


class StoredResponse(msgspec.Struct, omit_defaults=True):
    """A finished result: inline body, an object, or a large (302) object."""

    status: int
    headers: list[tuple[str, str]]
    body_b64: str | None = msgspec.field(default=None, name="bodyBase64")
    object_name: str | None = msgspec.field(default=None, name="objectName")
    # the object is a zip answered with 302 + a signed Location
    large: bool = False


class StatusRecord(msgspec.Struct, omit_defaults=True):
    """The status bucket's value of a detached (202) request, keyed `subjects.status_key(rid)`."""

    request_id: str = msgspec.field(name="requestId")
    function_id: str = msgspec.field(name="functionId")
    version_id: str = msgspec.field(name="functionVersionId")
    nca_id: str = msgspec.field(name="ncaId")
    status: RequestStatus
    percent_complete: int | None = msgspec.field(default=None, name="percentComplete")
    # the last progress file's partialResponse (JSON), served with 202s
    partial_response: Any | None = msgspec.field(default=None, name="partialResponse")
    response: StoredResponse | None = None
    # the idempotency bucket's key, when the request came with an Idempotency-Key (Envelope's)
    idempotency: str | None = None

    @property
    def is_final(self) -> bool:
        """Fulfilled, errored or rejected: nothing will change it any more."""
        return self.status in FINAL_STATUSES


FINAL_STATUSES = frozenset({RequestStatus.FULFILLED, RequestStatus.ERRORED, RequestStatus.REJECTED})


def rejected(record: StatusRecord) -> StatusRecord:
    """The record of the same request once cancelled."""
    return msgspec.structs.replace(
        record, status=RequestStatus.REJECTED, percent_complete=None, partial_response=None, response=None
    )


_status_decoder = msgspec.json.Decoder(StatusRecord)


def encode_status(record: StatusRecord) -> bytes:
    return _encode(record)


def decode_status(data: bytes) -> StatusRecord:
    try:
        return _status_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed status record: {exc}") from None


# --- idempotency keys ----------------------------------------------------------------------------


class IdempotencyRecord(msgspec.Struct, omit_defaults=True):
    """The idempotency bucket's value of one (account, Idempotency-Key), keyed
    `subjects.idempotency_key(nca, key)`: the first request's fingerprint and id, then its outcome."""

    fingerprint: str
    request_id: str = msgspec.field(name="requestId")
    function_id: str = msgspec.field(name="functionId")
    version_id: str = msgspec.field(name="functionVersionId")
    nca_id: str = msgspec.field(name="ncaId")
    # the final status and response once a gateway saw them (replayed to later requests with the key)
    status: RequestStatus | None = None
    response: StoredResponse | None = None


_idempotency_decoder = msgspec.json.Decoder(IdempotencyRecord)


def encode_idempotency(record: IdempotencyRecord) -> bytes:
    return _encode(record)


def decode_idempotency(data: bytes) -> IdempotencyRecord:
    try:
        return _idempotency_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed idempotency record: {exc}") from None


def _one_line(text: str) -> str:
    """Header values cannot hold line breaks."""
    return text.replace("\r", " ").replace("\n", " ")
