"""Settings of the gateway (environment prefix FNPLANE_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.shared.topology import (
    IDEMPOTENCY_TTL_S,
    OBJECT_TTL_S,
    OBJECTS_MAX_BYTES,
    REQUEST_TTL_S,
    STATUS_MAX_BYTES,
    STATUS_TTL_S,
)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_GATEWAY_")

    # the label that marks Host-header invocation: {fid}.invocation.{domain}
    host_label: str = "invocation"
    # absolute base of URLs the gateway hands out (asset uploadUrl, large-result Location);
    # empty: the request's own scheme and Host
    public_url: str = ""
    # base of the signed URLs workers download input assets from (NVCF: presigned GETs); empty:
    # public_url, else the request's own scheme and Host (`fnplane up` sets its loopback listener)
    asset_base_url: str = ""
    # NVCF-INVOCATION-REGION given to the function
    region: str = "local"
    # a unique id per gateway process (response inboxes); empty: random
    gateway_id: str = ""
    # first bytes of a request body that travel inside the queued message (NVCF: 32 KiB)
    inline_body_bytes: int = 32 * 1024
    # the rest is pulled by the worker in chunks of at most this size
    body_chunk_bytes: int = 256 * 1024
    # an HTTP/2 request body is read as it arrives (a stream left unread would hold the connection's
    # shared flow-control window): up to this many unread bytes per request stay in memory, the rest
    # go to a temporary file (HTTP/1.1 bodies wait in the client's connection instead)
    body_spool_memory_bytes: int = Field(default=1024 * 1024, ge=0)
    # request bodies over this are refused with 413
    max_request_body_bytes: int = 512 * 1024 * 1024
    # the legacy /exec JSON envelope (NVCF: axum's 2 MB default)
    max_exec_body_bytes: int = 2 * 1024 * 1024
    # JetStream bound of every version's request queue; a full queue answers 429
    max_queued_requests: int = 100_000
    # per-version overrides of max_queued_requests, {versionId: bound}
    queue_limits: dict[str, int] = Field(default_factory=dict)
    # JetStream max_msg_size of the request queues (a queued request: envelope + inline body)
    max_message_bytes: int = 8 * 1024 * 1024
    # a queued request is dropped this long after it was queued, picked up or not (NVCF REQUEST_TTL:
    # 60 min): the max age of every version's queue. At most the status records' 1 h lifetime
    request_ttl_s: float = Field(default=REQUEST_TTL_S, gt=0, le=STATUS_TTL_S)
    # a detached request's status record lives this long after its last write (the worker rewrites it
    # while the request runs); the TTL of the status bucket the gateway creates
    status_ttl_s: float = Field(default=STATUS_TTL_S, gt=0)
    # a request not answered this soon starts watching for its client to disconnect (cancel on the
    # worker); quicker answers never need the watcher
    disconnect_watch_after_s: float = 0.05
    # seconds the gateway waits beyond NVCF-POLL-SECONDS for the worker's first answer
    poll_grace_s: float = 2.0
    # one JetStream publish (waits for the ack), and how often a timed-out publish is retried
    publish_timeout_s: float = 5.0
    publish_attempts: int = 3
    # purging a cancelled or timed-out request from its queue
    purge_timeout_s: float = 5.0
    # once a response started, no message from the worker for this long ends it with an error
    worker_silence_s: float = 20.0
    # a queued request without a head this long is checked: if its message has left the queue (a worker
    # took and finished it) the answer was lost on the way (a NATS node died, a link broke) and the
    # caller gets a 503 at once; then again after twice as long, and so on (one JetStream read each)
    lost_answer_check_after_s: float = Field(default=3.0, gt=0)
    # credential + function lookups are cached this long
    auth_cache_ttl_s: float = 5.0
    # signed asset upload URL validity (NVCF presign: 35 min) and large-result Location validity (24 h)
    upload_url_ttl_s: float = 35 * 60.0
    result_url_ttl_s: float = 24 * 3600.0
    # assets (records and content) and large results are deleted this long after they were stored
    # (NVCF: 24 h); the TTL of the buckets the gateway creates (shared/topology.py)
    object_ttl_s: float = OBJECT_TTL_S
    # quotas (docs/security.md "Quotas"): one asset's bytes (over: 413), and per account the number of
    # assets and their bytes together (over: 429); the asset store's own bound is object_store_max_bytes
    max_asset_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_assets_per_account: int = Field(default=100, ge=1)
    max_asset_bytes_per_account: int = Field(default=2 * 1024**3, ge=1)
    # JetStream max_bytes of the object store (assets, large and detached results) and of the status
    # bucket (detached requests' records and small results); a full bucket refuses writes (503)
    object_store_max_bytes: int = Field(default=OBJECTS_MAX_BYTES, ge=1024 * 1024)
    status_bucket_max_bytes: int = Field(default=STATUS_MAX_BYTES, ge=1024 * 1024)
    # "which gateway holds request X" broadcast, for queue positions
    locate_timeout_s: float = 0.5
    nats_connect_timeout_s: float = 5.0
    # between attempts to reconnect to NATS; shorter than the workers' 2 s, so that after a server
    # restart the gateway listens again before the workers send the answers they held meanwhile
    nats_reconnect_wait_s: float = Field(default=0.25, gt=0)
    # control plane base URL for the scale-from-zero wake hint (empty: no hint)
    control_url: str = ""
    # deadline of one wake call
    wake_timeout_s: float = 2.0
    # a request not answered this soon triggers the wake hint (instances exist but are busy, or died)
    wake_after_s: float = 1.0
    # scale from zero at once: a request for a version whose queue has no worker pulling and nothing in
    # flight sends the wake hint without waiting wake_after_s; the queue is looked at this often at most
    # per version
    wake_probe_interval_s: float = 1.0
    # invocations (pexec, exec, direct) in flight on this gateway beyond which it answers 503 with
    # Retry-After overload_retry_after_s instead of taking more (0: no limit)
    max_concurrent_invocations: int = Field(default=10_000, ge=0)
    overload_retry_after_s: int = Field(default=1, ge=1)
    # a full queue's 429 says Retry-After = the time its measured drain rate takes for one request,
    # capped at this (also the answer when nothing drains)
    queue_full_retry_after_max_s: int = Field(default=60, ge=1)
    # bodies of requests queued whole (Prefer: respond-async, an Idempotency-Key) are read before
    # queueing, up to this (larger inputs go as assets); at most max_message_bytes less the envelope
    max_detached_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # an Idempotency-Key and its replayable result are kept this long (the idempotency bucket's TTL)
    idempotency_ttl_s: float = Field(default=IDEMPOTENCY_TTL_S, gt=0)
