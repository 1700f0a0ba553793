"""Every NATS subject, stream and bucket name, built here and nowhere else (the headers of the request
path's messages belong to shared/wire.py, the streams' and buckets' settings to shared/topology.py)."""

from __future__ import annotations

import re

PREFIX = "fnplane"


# Core-NATS broadcast from the control plane to every gateway: credentials that stopped being valid
# (payload: shared/revocations.py).
CREDENTIALS_REVOKED = "fnplane.auth.revoked"

# Core-NATS broadcast from the control plane to every gateway: a version was undeployed, so the
# requests still queued for it will never run (payload: wire.Undeployed).
VERSIONS_UNDEPLOYED = "fnplane.versions.undeployed"


def cluster_changed(cluster_name: str) -> str:
    """Core-NATS kick to the agent of a cluster: its instance assignments changed."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.changed"


def _token(value: str) -> str:
    """A subject token: NATS forbids '.', '*', '>' and whitespace inside one."""
    if _SAFE_TOKEN.fullmatch(value):  # ids (UUIDs, hex) are already tokens: the per-request fast path
        return value
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value)


_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


# --- invocation plane: request path (gateway <-> worker) -------------------------------------------


# JetStream work-queue stream of one function version; every request is one message on its own subject.
def request_stream(version_id: str) -> str:
    return f"FNPLANE_RQ_{_token(version_id)}"


def request_subject(version_id: str, request_id: str) -> str:
    return f"{PREFIX}.rq.{_token(version_id)}.{_token(request_id)}"


def request_subjects(version_id: str) -> str:
    """The filter of a version's stream: every request of that version."""
    return f"{PREFIX}.rq.{_token(version_id)}.>"


# durable pull consumer shared by every instance (competing consumers)
REQUEST_CONSUMER = "workers"


def pull_request_subject(version_id: str) -> str:
    """JetStream API subject of a pull request on the version's shared consumer."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{request_stream(version_id)}.{REQUEST_CONSUMER}"


def worker_pull_inbox(worker_id: str) -> str:
    return f"{PREFIX}.wk.{_worker(worker_id)}.pull"


def cancel_subject(version_id: str) -> str:
    """Core-NATS broadcast to every worker of a version; the payload is the request id."""
    return f"{PREFIX}.cancel.{_token(version_id)}"


def gateway_responses(gateway_id: str) -> str:
    """Wildcard a gateway subscribes to for the response streams of its requests."""
    return f"{PREFIX}.gw.{_token(gateway_id)}.r.*"


def gateway_response_inbox(gateway_id: str, request_id: str) -> str:
    return f"{PREFIX}.gw.{_token(gateway_id)}.r.{_token(request_id)}"


def gateway_bodies(gateway_id: str) -> str:
    """Wildcard a gateway answers on with the next chunk of a request body (request/reply)."""
    return f"{PREFIX}.gw.{_token(gateway_id)}.b.*"


def gateway_body_inbox(gateway_id: str, request_id: str) -> str:
    return f"{PREFIX}.gw.{_token(gateway_id)}.b.{_token(request_id)}"


def gateway_acks(gateway_id: str) -> str:
    """Wildcard a gateway hears JetStream's answers to its queued requests on (stored, or why not);
    no worker may publish there."""
    return f"{PREFIX}.gw.{_token(gateway_id)}.a.*"


def gateway_ack_inbox(gateway_id: str, request_id: str) -> str:
    return f"{PREFIX}.gw.{_token(gateway_id)}.a.{_token(request_id)}"


# request/reply: "which gateway holds this request?" (queue position of a request still waiting)
LOCATE_SUBJECT = f"{PREFIX}.gw.locate"


def worker_inbox_prefix(worker_id: str) -> str:
    """The worker's own reply inboxes (nats-py `inbox_prefix`): its credential subscribes only under
    `fnplane.wk.<instance>.>`, so no worker can listen to another instance's replies."""
    return f"{PREFIX}.wk.{_worker(worker_id)}.i"


def worker_subjects(instance_id: str) -> str:
    """Everything addressed to the workers of one instance: pull inboxes, credits, reply inboxes."""
    return f"{PREFIX}.wk.{_token(instance_id)}.>"


def _worker(worker_id: str) -> str:
    """A worker id is "<instanceId>.<nonce>": two tokens, so one grant covers every worker process an
    instance ever runs (`worker_subjects`)."""
    instance, _, nonce = worker_id.partition(".")
    return f"{_token(instance)}.{_token(nonce)}" if nonce else _token(instance)


def worker_credits(worker_id: str) -> str:
    """Wildcard a worker subscribes to for the credits the gateway grants per response chunk."""
    return f"{PREFIX}.wk.{_worker(worker_id)}.c.*"


def worker_credit_inbox(worker_id: str, request_id: str) -> str:
    return f"{PREFIX}.wk.{_worker(worker_id)}.c.{_token(request_id)}"


def worker_sessions(worker_id: str) -> str:
    """Wildcard a worker subscribes to for the calls of the gRPC sessions it holds."""
    return f"{PREFIX}.wk.{_worker(worker_id)}.s.*"


def worker_session_inbox(worker_id: str, session_id: str) -> str:
    """Where the proxy sends the calls (and keepalives) of one gRPC session to the worker holding it."""
    return f"{PREFIX}.wk.{_worker(worker_id)}.s.{_token(session_id)}"


def last_token(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


# Key-value bucket of detached (202) requests: status, progress and small results, keyed
# "<versionId>.<requestId>" so a worker's credential can write only its own version's records.
STATUS_BUCKET = "fnplane_requests"
# Key-value bucket the gateways keep: request id -> version id of a detached or large-result request,
# so any gateway finds the status record and the result of a request id (workers cannot write it).
REQUEST_INDEX_BUCKET = "fnplane_request_versions"
# Object store bucket of assets.
OBJECT_BUCKET = "fnplane_objects"
# Key-value bucket of asset metadata, keyed "<account>.<assetId>".
ASSET_BUCKET = "fnplane_assets"
# Key-value bucket of gateway-wide state (the URL-signing key), shared by every gateway.
GATEWAY_BUCKET = "fnplane_gateway"
SIGNING_KEY = "url-signing-key"
# Key-value bucket of Idempotency-Key records, keyed "<account>.<sha256 of the key>".
IDEMPOTENCY_BUCKET = "fnplane_idempotency"


def kv_stream(bucket: str) -> str:
    """The JetStream stream under a key-value bucket (the NATS convention)."""
    return f"KV_{bucket}"


def object_stream(bucket: str) -> str:
    """The JetStream stream under an object-store bucket (the NATS convention)."""
    return f"OBJ_{bucket}"


def status_key(version_id: str, request_id: str) -> str:
    return f"{_token(version_id)}.{_token(request_id)}"


def status_keys(version_id: str) -> str:
    """Every status key of a version (the subject filter of a worker's writes)."""
    return f"{_token(version_id)}.*"


def index_key(request_id: str) -> str:
    return _token(request_id)


def idempotency_key(nca_id: str, key_digest: str) -> str:
    """The record of one Idempotency-Key of an account (the key itself is hashed: any header value)."""
    return f"{_token(nca_id)}.{_token(key_digest)}"


def result_bucket(version_id: str) -> str:
    """Object store of one version's large and detached results (a worker writes only its own
    version's: object names are one base64 token in `$O.<bucket>.M.<name>`, so a prefix of them cannot
    be granted)."""
    return f"fnplane_results_{_token(version_id)}"


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def object_subjects(bucket: str) -> str:
    return f"$O.{bucket}.>"


def object_chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


def object_meta_subject(bucket: str, encoded_name: str) -> str:
    return f"$O.{bucket}.M.{encoded_name}"


def asset_key(nca_id: str, asset_id: str) -> str:
    return f"{_token(nca_id)}.{_token(asset_id)}"


def asset_keys(nca_id: str) -> str:
    return f"{_token(nca_id)}.*"


def asset_object(nca_id: str, asset_id: str) -> str:
    return f"assets/{_token(nca_id)}/{_token(asset_id)}"


def result_object(request_id: str) -> str:
    return f"results/{_token(request_id)}"


def cluster_subjects(cluster_name: str) -> str:
    """Everything addressed to the agent of a cluster (assignment kicks, log requests)."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.>"


def agent_inbox_prefix(cluster_name: str) -> str:
    """The agent's own reply inboxes (nats-py `inbox_prefix`), under its cluster's subjects."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.i"


def instance_logs(cluster_name: str) -> str:
    """Request/reply to the agent of a cluster: the log lines of one of its instances (models/logs.py)."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.logs"


def instance_logs_cancel(cluster_name: str, token: str) -> str:
    """Where the control plane tells the agent to stop following a log (under the cluster's subjects,
    the only ones an agent's credential may subscribe to)."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.logs.cancel.{_token(token)}"


# the control plane's reply inboxes (nats-py `inbox_prefix`): the agents answer log requests there
CONTROL_INBOX_PREFIX = f"{PREFIX}.ctl.i"

# Core-NATS broadcast among control-plane replicas: "the reconciler should run" (a replica without the
# control lease was woken; the holder runs a pass). Empty payload.
CONTROL_RECONCILE = f"{PREFIX}.ctl.reconcile"
# Core-NATS broadcast among control-plane replicas: what one of them learnt that the autoscaler of the
# lease holder needs (agents' load reports, requests waiting for a version; control/peers.py)
CONTROL_OBSERVATIONS = f"{PREFIX}.ctl.observed"
