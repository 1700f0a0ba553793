"""The bus topology, declared once: every JetStream stream, consumer and bucket of the request path,
with its storage, TTL and limits. Pure data; `fnplane.bus.topology` is the one owner that makes the
server match it (names come from `shared/subjects.py`).

    FNPLANE_RQ_<version>   work queue of one function version (file storage: survives a NATS crash)
      consumer "workers"   durable pull consumer every instance of the version shares
    fnplane_requests       KV: status records of detached (202) requests,         1 h      1 GiB
                           "<versionId>.<requestId>"
    fnplane_request_versions KV (gateways only): request id -> version id of a     24 h    64 MiB
                           detached or large-result request
    fnplane_assets         KV: asset metadata, "<account>.<assetId>"              24 h    64 MiB
    fnplane_gateway        KV: gateway-wide state (the URL-signing key)          forever   1 MiB
    fnplane_idempotency    KV (gateways only): Idempotency-Key records           24 h     1 GiB
    fnplane_objects        object store: assets                                  24 h     8 GiB
    fnplane_results_<version> object store: one version's large/detached results 24 h  (no bound*)

Status records and results are laid out per version so that a worker's credential can be limited to
its own version's (shared/permissions.py). Every shared bucket has a maximum size (JetStream
`max_bytes`): a full bucket refuses new writes rather than filling the server's disk; the gateway
answers 429 with Retry-After until entries expire. (*) A version's result store has none: JetStream
reserves a stream's `max_bytes` from the server's store when the stream is created, so with a bound
per version a server with 50 GiB of store would host six function versions. Results are bounded by
their lifetime, the largest result a worker uploads, and the server's own store limit
(`max_file_store`), whose exhaustion fails the upload (the caller gets an errored answer).

Lifetimes fit together: a queued request lives at most `REQUEST_TTL_S`, and a status record is
refreshed while its request runs and then lives `STATUS_TTL_S` from its last write, so a record
outlives every delivery of its request; results outlive their status record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fnplane.shared import subjects

# NVCF REQUEST_TTL (60 min): a queued request is dropped this long after it was queued, and a
# detached request still running then is stopped
REQUEST_TTL_S = 3600.0
# status records of detached requests (NVCF keeps its tracker 1 h), counted from their last write
STATUS_TTL_S = 3600.0
# assets and large results (NVCF: 24 h)
OBJECT_TTL_S = 24 * 3600.0
# an Idempotency-Key is remembered this long (the IETF draft's suggestion: 24 h)
IDEMPOTENCY_TTL_S = 24 * 3600.0
# default bound of one version's queue (a full queue answers 429) and of one queued message
MAX_QUEUED_REQUESTS = 100_000
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# JetStream de-duplicates a retried publish of the same request id within this window
DUPLICATE_WINDOW_S = 5.0
# the most each bucket may hold (JetStream max_bytes), defaults of the gateway's settings
STATUS_MAX_BYTES = 1024**3
ASSET_RECORDS_MAX_BYTES = 64 * 1024**2
GATEWAY_STATE_MAX_BYTES = 1024**2
OBJECTS_MAX_BYTES = 8 * 1024**3
IDEMPOTENCY_MAX_BYTES = 1024**3
REQUEST_INDEX_MAX_BYTES = 64 * 1024**2


class Storage(StrEnum):
    FILE = "file"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """The knobs of one version's queue an operator may set (gateway settings)."""

    max_messages: int = MAX_QUEUED_REQUESTS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_age_s: float = REQUEST_TTL_S


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """The work-queue stream of one function version (NVCF's `rq_{region}_{fvid}`)."""

    name: str
    subjects: tuple[str, ...]
    limits: QueueLimits
    storage: Storage = Storage.FILE

    def stream_config(self) -> dict[str, Any]:
        """As keyword arguments of nats-py's StreamConfig (plain data: shared does not import nats)."""
        return {
            "name": self.name,
            "subjects": list(self.subjects),
            "retention": "workqueue",
            "storage": str(self.storage),
            "max_msgs": self.limits.max_messages,
            # one message per request id: a retried publish never queues a second copy
            "max_msgs_per_subject": 1,
            "discard": "new",
            "discard_new_per_subject": True,
            # JetStream refuses a duplicate window longer than the max age
            "duplicate_window": min(DUPLICATE_WINDOW_S, self.limits.max_age_s),
            "max_age": self.limits.max_age_s,
            "max_msg_size": self.limits.max_message_bytes,
            "allow_direct": True,
        }


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """The durable pull consumer the instances of a version compete on."""

    durable_name: str
    # JetStream redelivers a request whose worker went silent this long (NVCF: 30 s)
    ack_wait_s: float
    max_ack_pending: int = 100_000
    max_waiting: int = 100_000

    def consumer_config(self) -> dict[str, Any]:
        return {
            "durable_name": self.durable_name,
            "ack_policy": "explicit",
            "ack_wait": self.ack_wait_s,
            "max_ack_pending": self.max_ack_pending,
            "max_waiting": self.max_waiting,
        }


class BucketKind(StrEnum):
    KEY_VALUE = "kv"
    OBJECTS = "objects"


@dataclass(frozen=True, slots=True)
class BucketSpec:
    name: str
    kind: BucketKind
    ttl_s: float | None
    # JetStream max_bytes: writes past it are refused
    max_bytes: int
    storage: Storage = Storage.FILE
    # KV reads by subject ($JS.API.DIRECT.GET.<stream>.<subject>): what a scoped credential can be
    # allowed (a STREAM.MSG.GET names its subject in the payload, where no permission can see it)
    direct: bool = True


def request_queue(version_id: str, limits: QueueLimits | None = None) -> QueueSpec:
    return QueueSpec(
        name=subjects.request_stream(version_id),
        subjects=(subjects.request_subjects(version_id),),
        limits=limits or QueueLimits(),
    )


def request_consumer(ack_wait_s: float = 30.0) -> ConsumerSpec:
    return ConsumerSpec(durable_name=subjects.REQUEST_CONSUMER, ack_wait_s=ack_wait_s)


def buckets(
    *,
    status_ttl_s: float = STATUS_TTL_S,
    object_ttl_s: float = OBJECT_TTL_S,
    status_max_bytes: int = STATUS_MAX_BYTES,
    objects_max_bytes: int = OBJECTS_MAX_BYTES,
) -> tuple[BucketSpec, ...]:
    """Every bucket gateways and workers share; the gateway owns them and may shorten the lifetimes
    and sizes (tests, small hosts)."""
    return (
        BucketSpec(subjects.STATUS_BUCKET, BucketKind.KEY_VALUE, status_ttl_s, status_max_bytes),
        # a large result can be downloaded as long as it lives
        BucketSpec(
            subjects.REQUEST_INDEX_BUCKET,
            BucketKind.KEY_VALUE,
            max(object_ttl_s, status_ttl_s),
            REQUEST_INDEX_MAX_BYTES,
        ),
        BucketSpec(subjects.ASSET_BUCKET, BucketKind.KEY_VALUE, object_ttl_s, ASSET_RECORDS_MAX_BYTES),
        BucketSpec(subjects.GATEWAY_BUCKET, BucketKind.KEY_VALUE, None, GATEWAY_STATE_MAX_BYTES),
        BucketSpec(subjects.OBJECT_BUCKET, BucketKind.OBJECTS, object_ttl_s, objects_max_bytes),
    )


def gateway_buckets(*, idempotency_ttl_s: float = IDEMPOTENCY_TTL_S) -> tuple[BucketSpec, ...]:
    """Buckets only gateways use (workers never open them)."""
    return (
        BucketSpec(
            subjects.IDEMPOTENCY_BUCKET, BucketKind.KEY_VALUE, idempotency_ttl_s, IDEMPOTENCY_MAX_BYTES
        ),
    )


def worker_buckets(*, status_ttl_s: float = STATUS_TTL_S) -> tuple[BucketSpec, ...]:
    """The shared buckets a worker opens: only the status records (results: `result_store`)."""
    return (BucketSpec(subjects.STATUS_BUCKET, BucketKind.KEY_VALUE, status_ttl_s, STATUS_MAX_BYTES),)


# JetStream's "no limit"
UNBOUNDED = -1


def result_store(version_id: str, object_ttl_s: float = OBJECT_TTL_S) -> BucketSpec:
    """The object store of one version's large and detached results (no size reservation, see above)."""
    return BucketSpec(subjects.result_bucket(version_id), BucketKind.OBJECTS, object_ttl_s, UNBOUNDED)
