"""Every NATS subject, stream and bucket name, built here and nowhere else (the headers of the request
path's messages belong to shared/wire.py, the streams' and buckets' settings to shared/topology.py)."""

from __future__ import annotations

import re

PREFIX = "fnplane"


# Core-NATS broadcast from the control plane to every gateway: credentials that stopped being valid
# (payload: shared/revocations.py).
CREDENTIALS_REVOKED = "fnplane.auth.revoked"


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
    return f"{PREFIX}.wk.{_token(worker_id)}.pull"


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


# request/reply: "which gateway holds this request?" (queue position of a request still waiting)
LOCATE_SUBJECT = f"{PREFIX}.gw.locate"


def worker_credits(worker_id: str) -> str:
    """Wildcard a worker subscribes to for the credits the gateway grants per response chunk."""
    return f"{PREFIX}.wk.{_token(worker_id)}.c.*"


def worker_credit_inbox(worker_id: str, request_id: str) -> str:
    return f"{PREFIX}.wk.{_token(worker_id)}.c.{_token(request_id)}"


def last_token(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


# Key-value bucket of detached (202) requests: status, progress and small results.
STATUS_BUCKET = "fnplane_requests"
# Object store bucket of assets and large or detached results.
OBJECT_BUCKET = "fnplane_objects"
# Key-value bucket of asset metadata, keyed "<account>.<assetId>".
ASSET_BUCKET = "fnplane_assets"
# Key-value bucket of gateway-wide state (the URL-signing key), shared by every gateway.
GATEWAY_BUCKET = "fnplane_gateway"
SIGNING_KEY = "url-signing-key"


def kv_stream(bucket: str) -> str:
    """The JetStream stream under a key-value bucket (the NATS convention)."""
    return f"KV_{bucket}"


def object_stream(bucket: str) -> str:
    """The JetStream stream under an object-store bucket (the NATS convention)."""
    return f"OBJ_{bucket}"


def status_key(request_id: str) -> str:
    return _token(request_id)


def asset_key(nca_id: str, asset_id: str) -> str:
    return f"{_token(nca_id)}.{_token(asset_id)}"


def asset_keys(nca_id: str) -> str:
    return f"{_token(nca_id)}.*"


def asset_object(nca_id: str, asset_id: str) -> str:
    return f"assets/{_token(nca_id)}/{_token(asset_id)}"


def result_object(request_id: str) -> str:
    return f"results/{_token(request_id)}"


def instance_logs(cluster_name: str) -> str:
    """Request/reply to the agent of a cluster: the log lines of one of its instances (models/logs.py)."""
    return f"{PREFIX}.clusters.{_token(cluster_name)}.logs"
