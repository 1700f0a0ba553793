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
      a queued request also carries the gateway span's `traceparent` (+ `tracestate`) while tracing is on
      status record: the status bucket's value of a detached (202) request, written by the worker
      idempotency record: the idempotency bucket's value of one Idempotency-Key, written by gateways
      undeploy notice: control plane -> every gateway, a version's queued requests will never run

A gRPC session (`InvocationMode.GRPC`) is queued like a request; the worker that takes it holds one
slot for the session and its calls travel on two subjects, each call a stream of its own:

    grpc proxy                                                worker
      | -- session request -> version's work queue --------->   |  Envelope (mode grpc)
      | <- session (request/reply on the session inbox) -----   |  SessionAccept: where calls go
      | -- open / data / end / cancel -> calls subject ------>   |  GrpcCall, request messages
      | <- head / data / end ------------ call inbox ---------   |  metadata, messages, GrpcTrailer
      | <- credit ----------------------- call inbox ---------   |  request messages granted
      | -- credit (reply to a data message) ----------------->   |  response messages granted
      | -- alive / close -> calls subject ------------------->   |  the proxy still holds the session
      | <- alive / end ------------------ session inbox ------   |  the worker still holds it

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

import base64
from collections.abc import Mapping, Sequence
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
HDR_WAIT = "Fnplane-Wait"  # body pull: seconds the gateway may hold it before answering what it has
HDR_STATUS = "Status"  # JetStream's status code on pull responses (100, 404, 408, 409)
HDR_CANCEL = "Fnplane-Cancel"  # "explicit" on a cancel a client asked for (DELETE), not a disconnect
HDR_SESSION = "Fnplane-Session"  # SessionAccept JSON on a worker's answer to a gRPC session request
HDR_CALL = "Fnplane-Call"  # the call id on every message of a gRPC call towards the worker
HDR_GRPC_CALL = "Fnplane-Grpc-Call"  # GrpcCall JSON on the open of a gRPC call
HDR_TRAILER = "Fnplane-Trailer"  # GrpcTrailer JSON on the end of a gRPC call
HDR_MORE = "Fnplane-More"  # "1" on a piece of a gRPC message that goes on in the next data message
# W3C trace context of the gateway's span on a queued request (only while tracing is on): the worker's
# span continues it (NVCF injects it into the NATS headers the same way)
HDR_TRACEPARENT = "traceparent"
HDR_TRACESTATE = "tracestate"
TRACE_HEADERS = (HDR_TRACEPARENT, HDR_TRACESTATE)


class WireError(FnplaneError):
    """A message that does not follow this module's format."""


class Kind(StrEnum):
    HEAD = "head"
    DATA = "data"
    END = "end"
    ALIVE = "alive"
    # gRPC sessions only
    SESSION = "session"
    CREDIT = "credit"
    OPEN = "open"
    CANCEL = "cancel"
    CLOSE = "close"


class InvocationMode(StrEnum):
    PEXEC = "pexec"  # NVCF "compatibility mode": 202 timer, progress, 302 large results, problem+json
    DIRECT = "direct"  # Host-header / function-id header invocation: pure pass-through
    GRPC = "grpc"  # a gRPC session: the envelope opens it, its calls follow on the session's subjects


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


def encode_request(envelope: Envelope, trace: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers of the queued request (its payload is the first body bytes); `trace`: the W3C trace
    context to continue (`traceparent`, `tracestate`)."""
    headers = {HDR_MSG_ID: envelope.request_id, HDR_ENVELOPE: _encode(envelope).decode()}
    if trace:
        for name in TRACE_HEADERS:
            if value := trace.get(name):
                headers[name] = _one_line(value)
    return headers


# JetStream refuses a message whose NATS header block is longer (nats-server: math.MaxUint16)
MAX_QUEUED_HEADER_BYTES = 65535


def header_block_bytes(headers: Mapping[str, str]) -> int:
    """The length of the NATS header block that carries `headers` (`NATS/1.0`, one line each)."""
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def decode_trace(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The trace context a queued request carries (None: none)."""
    if not headers or HDR_TRACEPARENT not in headers:
        return None
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}


def decode_request(headers: dict[str, str] | None) -> Envelope:
    raw = (headers or {}).get(HDR_ENVELOPE)
    if raw is None:
        raise WireError("queued request without an envelope")
    try:
        return _envelope_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed envelope: {exc}") from None


# --- request body pulls --------------------------------------------------------------------------


def encode_body_pull(offset: int, wait_s: float | None = None) -> dict[str, str]:
    headers = {HDR_OFFSET: str(offset)}
    if wait_s is not None:
        headers[HDR_WAIT] = f"{wait_s:g}"
    return headers


def decode_body_pull(headers: dict[str, str] | None) -> tuple[int, float | None]:
    """The offset, and how long the gateway may wait for more body before it answers (None: until
    there is some; a client slower than the worker's pull timeout then failed the request 500)."""
    raw = (headers or {}).get(HDR_OFFSET, "0")
    if not raw.isdigit():
        raise WireError(f"body pull with a bad offset {raw!r}")
    wait = (headers or {}).get(HDR_WAIT)
    try:
        wait_s = float(wait) if wait is not None else None
    except ValueError:
        raise WireError(f"body pull with a bad wait {wait!r}") from None
    if wait_s is not None and not 0 < wait_s < float("inf"):
        raise WireError(f"body pull with a bad wait {wait!r}")
    return int(raw), wait_s


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
    # the worker's own problem (the function unreachable, the worker failed), not the function's
    # answer: the gateway counts it as the platform's error (app_invocation_error)
    platform_error: bool = msgspec.field(default=False, name="platformError")


_head_decoder = msgspec.json.Decoder(Head)


class HeadMessage(msgspec.Struct):
    attempt: str
    head: Head
    body: bytes


class ChunkMessage(msgspec.Struct):
    attempt: str
    data: bytes
    # a gRPC message goes on in the next chunk (fragments())
    more: bool = False


class EndMessage(msgspec.Struct):
    attempt: str
    error: str | None
    # the end of a gRPC call: its status, details and trailing metadata
    trailer: GrpcTrailer | None = None


class AliveMessage(msgspec.Struct):
    attempt: str


class SessionMessage(msgspec.Struct):
    """A worker took a gRPC session; `reply` is where the proxy confirms (or refuses) it."""

    attempt: str
    accept: SessionAccept
    reply: str = ""


class CreditMessage(msgspec.Struct):
    """A worker grants a gRPC call more request messages."""

    attempt: str
    chunks: int


ResponseMessage = HeadMessage | ChunkMessage | EndMessage | AliveMessage | SessionMessage | CreditMessage


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
        return ChunkMessage(attempt, data, HDR_MORE in headers)  # type: ignore[operator]
    if kind == Kind.HEAD:
        assert headers is not None
        try:
            head = _head_decoder.decode(headers.get(HDR_HEAD, ""))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WireError(f"malformed head: {exc}") from None
        return HeadMessage(attempt, head, data)
    if kind == Kind.END:
        assert headers is not None
        raw = headers.get(HDR_TRAILER)
        trailer = _decode(_trailer_decoder, raw, "trailer") if raw is not None else None
        return EndMessage(attempt, headers.get(HDR_ERROR), trailer)
    if kind == Kind.ALIVE:
        return AliveMessage(attempt)
    if kind == Kind.CREDIT:
        return CreditMessage(attempt, decode_credit(data))
    if kind == Kind.SESSION:
        assert headers is not None
        return SessionMessage(attempt, _decode(_accept_decoder, headers.get(HDR_SESSION, ""), "session"))
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


# --- undeploy ------------------------------------------------------------------------------------


class Undeployed(msgspec.Struct, frozen=True):
    """The control plane undeployed a version (subjects.VERSIONS_UNDEPLOYED): the requests still in
    its queue that no worker took are answered 404 by the gateways (invocation/undeploys.py)."""

    function_id: str = msgspec.field(name="functionId")
    version_id: str = msgspec.field(name="functionVersionId")


_undeployed_decoder = msgspec.json.Decoder(Undeployed)


def encode_undeployed(event: Undeployed) -> bytes:
    return _encode(event)


def decode_undeployed(data: bytes) -> Undeployed:
    try:
        return _undeployed_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed undeploy notice: {exc}") from None


# an answer the platform gave in place of any worker (a request whose version was undeployed)
PLATFORM_ATTEMPT = "platform"


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
    percent_complete: int | None = msgspec.field(default=None, name="percentComplete")


_idempotency_decoder = msgspec.json.Decoder(IdempotencyRecord)


def encode_idempotency(record: IdempotencyRecord) -> bytes:
    return _encode(record)


def decode_idempotency(data: bytes) -> IdempotencyRecord:
    try:
        return _idempotency_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed idempotency record: {exc}") from None


# --- gRPC sessions -------------------------------------------------------------------------------

# a gRPC message (up to 4 MiB and more) travels in pieces of at most this size: NATS servers refuse
# messages over their max_payload (1 MiB by default)
GRPC_FRAGMENT_BYTES = 256 * 1024


def fragments(message: bytes, size: int = GRPC_FRAGMENT_BYTES) -> list[bytes]:
    """The pieces of one gRPC message, in order (an empty message is one empty piece)."""
    if len(message) <= size:
        return [message]
    return [message[i : i + size] for i in range(0, len(message), size)]


def more_header(headers: dict[str, str]) -> dict[str, str]:
    """The headers of a data message whose gRPC message goes on in the next one."""
    return {**headers, HDR_MORE: "1"}


# gRPC metadata: text values, and bytes for keys ending in "-bin" (base64 on the wire)
Metadata = Sequence[tuple[str, str | bytes]]
BINARY_SUFFIX = "-bin"


def encode_metadata(metadata: Metadata) -> list[tuple[str, str]]:
    out = []
    for key, value in metadata:
        if isinstance(value, bytes):
            out.append((key, base64.b64encode(value).decode()))
        else:
            out.append((key, value))
    return out


def decode_metadata(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str | bytes]]:
    out: list[tuple[str, str | bytes]] = []
    for key, value in pairs:
        if key.endswith(BINARY_SUFFIX):
            try:
                out.append((key, base64.b64decode(value, validate=True)))
            except ValueError:
                raise WireError(f"metadata {key!r} is not base64") from None
        else:
            out.append((key, value))
    return out


class SessionAccept(msgspec.Struct):
    # the worker's subject for this session's calls (under its own subjects)
    calls_to: str = msgspec.field(name="callsTo")


class GrpcCall(msgspec.Struct, omit_defaults=True):
    """One call of a session, as the proxy opens it on the worker."""

    call_id: str = msgspec.field(name="callId")
    # "/package.Service/Method"
    method: str
    # the client's metadata (encode_metadata) without its credential
    metadata: list[tuple[str, str]]
    # the proxy's inbox of this call's response stream
    reply_to: str = msgspec.field(name="replyTo")
    # the client's deadline, as seconds left when the call was opened
    timeout_s: float | None = msgspec.field(default=None, name="timeoutSeconds")
    # request messages the proxy sends before it waits for the worker's credit
    window: int = 8
    # the open's payload is the call's first request message (it arrived with the call)
    inline: bool = False
    # and the client sent nothing after it: the whole request is here (most unary and
    # server-streaming calls: one message to the worker, and one batch to the function)
    complete: bool = False


class GrpcTrailer(msgspec.Struct, omit_defaults=True):
    """How a call ended: its gRPC status code, details and trailing metadata (encode_metadata)."""

    code: int
    details: str = ""
    metadata: list[tuple[str, str]] = msgspec.field(default_factory=list)


_accept_decoder = msgspec.json.Decoder(SessionAccept)
_call_decoder = msgspec.json.Decoder(GrpcCall)
_trailer_decoder = msgspec.json.Decoder(GrpcTrailer)


def _decode(decoder: msgspec.json.Decoder[Any], raw: str, what: str) -> Any:
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WireError(f"malformed {what}: {exc}") from None


# worker -> proxy


def encode_session_accept(accept: SessionAccept, attempt: int | str) -> dict[str, str]:
    return {HDR_KIND: f"{Kind.SESSION} {attempt}", HDR_SESSION: _encode(accept).decode()}


def encode_grpc_end(attempt: int | str, trailer: GrpcTrailer) -> dict[str, str]:
    return {HDR_KIND: f"{Kind.END} {attempt}", HDR_TRAILER: _encode(trailer).decode()}


def encode_credit_message(attempt: int | str, chunks: int) -> tuple[dict[str, str], bytes]:
    return {HDR_KIND: f"{Kind.CREDIT} {attempt}"}, encode_credit(chunks)


def encode_session_refusal(detail: str) -> dict[str, str]:
    """The proxy's answer to a session it no longer waits for (its caller gave up)."""
    return {HDR_ERROR: _one_line(detail)}


def session_refusal(headers: dict[str, str] | None) -> str | None:
    """Why the proxy refused a session (None: confirmed)."""
    return (headers or {}).get(HDR_ERROR)


# proxy -> worker, on the session's calls subject


def encode_call_open(call: GrpcCall) -> dict[str, str]:
    return {HDR_KIND: str(Kind.OPEN), HDR_CALL: call.call_id, HDR_GRPC_CALL: _encode(call).decode()}


def call_header(kind: Kind, call_id: str) -> dict[str, str]:
    """The headers of a call's data, end (the client finished sending) or cancel message."""
    return {HDR_KIND: str(kind), HDR_CALL: call_id}


SESSION_ALIVE = {HDR_KIND: str(Kind.ALIVE)}
SESSION_CLOSE = {HDR_KIND: str(Kind.CLOSE)}


class CallOpened(msgspec.Struct):
    call: GrpcCall
    # the first request message when `call.inline`
    data: bytes = b""


class CallData(msgspec.Struct):
    call_id: str
    data: bytes
    # the request message goes on in the next data message (fragments())
    more: bool = False


class CallEnded(msgspec.Struct):
    call_id: str


class CallCancelled(msgspec.Struct):
    call_id: str


class SessionAlive(msgspec.Struct):
    pass


class SessionClosed(msgspec.Struct):
    pass


SessionEvent = CallOpened | CallData | CallEnded | CallCancelled | SessionAlive | SessionClosed


def decode_session_event(headers: dict[str, str] | None, data: bytes) -> SessionEvent:
    headers = headers or {}
    kind = headers.get(HDR_KIND)
    if kind == Kind.DATA:
        return CallData(headers.get(HDR_CALL, ""), data, HDR_MORE in headers)
    if kind == Kind.OPEN:
        return CallOpened(_decode(_call_decoder, headers.get(HDR_GRPC_CALL, ""), "call"), data)
    if kind == Kind.END:
        return CallEnded(headers.get(HDR_CALL, ""))
    if kind == Kind.CANCEL:
        return CallCancelled(headers.get(HDR_CALL, ""))
    if kind == Kind.ALIVE:
        return SessionAlive()
    if kind == Kind.CLOSE:
        return SessionClosed()
    raise WireError(f"unknown session message kind {kind!r}")


def _one_line(text: str) -> str:
    """Header values cannot hold line breaks."""
    return text.replace("\r", " ").replace("\n", " ")
