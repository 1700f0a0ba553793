"""The request path between the gateway and the worker, over NATS (names in shared.subjects).

1. The gateway publishes one JetStream message per request to `request_subject(vid, rid)` with header
   `Nats-Msg-Id: rid` (a retried publish is de-duplicated), header `Fnplane-Envelope` holding the
   `InvocationEnvelope` JSON, and the first `inline` bytes of the request body as payload.
2. If `body_more`, the worker pulls the rest of the body with core-NATS requests to `body_from`
   (header `Fnplane-Offset`: bytes already held); each reply carries the next chunk, `Fnplane-Eof: 1`
   on the last one, or `Fnplane-Error` if the body cannot be served (client gone, over the limit,
   already consumed by an earlier delivery).
3. The worker streams the response to `reply_to`: a `head` message (`Fnplane-Head`: ResponseHead JSON,
   payload: the first body bytes, `Fnplane-End: 1` when that is all), then `data` messages, then an
   `end` message (`Fnplane-Error` when the response broke off). Every `data` message carries a reply
   subject; the gateway answers it once the chunk went to the client, which grants one more chunk
   (credit-based flow control: at most `window` chunks in flight). The head carries the window
   (`Fnplane-Window`); the gateway then answers every `window // 4`-th chunk with the count it grants
   as payload (an empty answer grants one). `alive` messages tell the gateway the worker still works
   on a long request. Every message carries `Fnplane-Attempt`.
4. Cancellation: the gateway publishes the request id on `cancel_subject(vid)` and purges the queued
   message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from fnplane.shared.models.compute import WireModel

# NVCF numbers (reference/invocation.md section 4)
DEFAULT_POLL_S = 60
DEFAULT_SSE_POLL_S = 1200
MAX_POLL_S = 3600
POLL_GRACE_S = 2.0
MAX_DIRECT_RESPONSE_BYTES = 5 * 1024 * 1024
# detached results and their status records (NVCF keeps its tracker 1 h); large results live 24 h
STATUS_TTL_S = 3600.0
# a queued request is dropped this long after it was queued, even if no worker ever finished it
# (NVCF REQUEST_TTL: 60 min). At most STATUS_TTL_S: a status record is written after the request was
# queued and lives STATUS_TTL_S from its last write, so it outlives every (re)delivery of its request.
REQUEST_TTL_S = 3600.0
OBJECT_TTL_S = 24 * 3600.0
ASSET_TTL_S = 24 * 3600.0
PROGRESS_FILE = "progress"


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


class AssetReference(WireModel):
    asset_id: str = Field(alias="assetId")
    object_name: str = Field(alias="objectName")
    content_type: str | None = Field(None, alias="contentType")


class InvocationEnvelope(WireModel):
    request_id: str = Field(alias="requestId")
    function_id: str = Field(alias="functionId")
    version_id: str = Field(alias="functionVersionId")
    function_name: str = Field("", alias="functionName")
    nca_id: str = Field(alias="ncaId")
    subject: str = ""
    mode: InvocationMode
    method: str
    # path and query exactly as the container must see them
    path: str
    # client headers after the gateway removed Authorization and hop-by-hop headers
    headers: list[tuple[str, str]]
    reply_to: str = Field(alias="replyTo")
    body_from: str = Field(alias="bodyFrom")
    # epoch seconds when the gateway accepted the request; the poll window counts from here
    request_time: float = Field(alias="requestTime")
    poll_s: float = Field(alias="pollSeconds")
    body_length: int | None = Field(None, alias="bodyLength")
    body_more: bool = Field(False, alias="bodyMore")
    assets: list[AssetReference] = Field(default_factory=list)
    max_response_bytes: int = Field(MAX_DIRECT_RESPONSE_BYTES, alias="maxResponseBytes")
    invocation_region: str = Field("local", alias="invocationRegion")
    # the worker sends `alive` at least this often while it works on the request (the gateway cuts a
    # response after its worker-silence timeout; it sends a third of it): min(this, the worker's own
    # progress interval). None: the worker's setting alone
    heartbeat_s: float | None = Field(None, alias="heartbeatSeconds")


class ResponseHead(WireModel):
    status: int
    headers: list[tuple[str, str]]


class StoredResponse(WireModel):
    """A finished result of a detached request: inline body, an object, or a large (302) object."""

    status: int
    headers: list[tuple[str, str]]
    body_b64: str | None = Field(None, alias="bodyBase64")
    object_name: str | None = Field(None, alias="objectName")
    # the object is a zip answered with 302 + a signed Location
    large: bool = False


class StatusRecord(WireModel):
    """Key `status_key(rid)` of STATUS_BUCKET, written by the worker when a request detaches (202)."""

    request_id: str = Field(alias="requestId")
    function_id: str = Field(alias="functionId")
    version_id: str = Field(alias="functionVersionId")
    nca_id: str = Field(alias="ncaId")
    status: RequestStatus
    percent_complete: int | None = Field(None, alias="percentComplete")
    # the last progress file's partialResponse (JSON), served with 202s
    partial_response: Any | None = Field(None, alias="partialResponse")
    response: StoredResponse | None = None


class AssetRecord(WireModel):
    """Key `asset_key(nca, id)` of ASSET_BUCKET."""

    asset_id: str = Field(alias="assetId")
    nca_id: str = Field(alias="ncaId")
    content_type: str = Field(alias="contentType")
    description: str
    created_at: str = Field(alias="createdAt")
    uploaded: bool = False
    size: int | None = None


def request_stream_config(
    version_id: str, max_messages: int, max_message_bytes: int, max_age_s: float = REQUEST_TTL_S
) -> dict[str, Any]:
    """The JetStream config of a version's request queue (NVCF's `rq_{region}_{fvid}`), as plain data.

    Both planes create it when missing (the gateway on publish, the worker on start). `max_age_s` drops
    a request that waited (or was redelivered) that long, so work whose every worker died is not run
    again hours later.
    """
    from fnplane.shared import subjects

    return {
        "name": subjects.request_stream(version_id),
        "subjects": [subjects.request_subjects(version_id)],
        "retention": "workqueue",
        "storage": "file",
        "max_msgs": max_messages,
        "max_msgs_per_subject": 1,
        "discard": "new",
        "discard_new_per_subject": True,
        # JetStream refuses a duplicate window longer than the max age
        "duplicate_window": min(5.0, max_age_s),
        "max_age": max_age_s,
        "max_msg_size": max_message_bytes,
        "allow_direct": True,
    }


def request_consumer_config(ack_wait_s: float) -> dict[str, Any]:
    from fnplane.shared import subjects

    return {
        "durable_name": subjects.REQUEST_CONSUMER,
        "ack_policy": "explicit",
        "ack_wait": ack_wait_s,
        "max_ack_pending": 100_000,
        "max_waiting": 100_000,
    }
