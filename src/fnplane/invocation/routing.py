"""Which requests the gateway serves, and the small parsing rules of invocation requests."""

from __future__ import annotations

import re
from typing import Any

from fnplane.shared import errors
from fnplane.shared.headers import HOP_BY_HOP
from fnplane.shared.models.invocation import DEFAULT_POLL_S, DEFAULT_SSE_POLL_S, MAX_POLL_S

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

GATEWAY_PREFIXES = (
    "/v2/nvcf/pexec/",
    "/v2/nvcf/exec/",
    "/v2/nvcf/assets",
    "/v2/nvcf/queues/",
)

# removed before the request goes to the worker (invocation.md 3.1 step 3); Authorization is the
# caller's credential and never reaches the function
DROPPED_REQUEST_HEADERS = HOP_BY_HOP | frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "function-id",
        "function-version-id",
        "nvcf-input-asset-references",
        "http2-settings",
    }
)


def result_path(request_id: str) -> str:
    """Where the signed Location of a large result points."""
    return f"/v2/nvcf/pexec/results/{request_id}"


def is_uuid(value: str) -> bool:
    return UUID_RE.match(value) is not None


def direct_target(headers: dict[str, str], host_label: str = "invocation") -> tuple[str, str | None] | None:
    """(functionId, versionId) of a direct invocation, or None.

    Headers `function-id` / `function-version-id` take precedence over the Host forms
    `{fid}.{label}.{domain}` and `{vid}.{fid}.{label}.{domain}` (version first); the domain may be an
    address and port. `function-version-id` also pins the version of the `{fid}` Host form. Host names
    are case-insensitive (RFC 9110 4.2.3) and ids are stored in lower case, so both are compared in
    lower case.
    """
    pinned = (headers.get("function-version-id") or "").strip().lower() or None
    fid = headers.get("function-id")
    if fid:
        return fid.strip().lower(), pinned
    host = (headers.get("host") or headers.get(":authority") or "").lower()
    labels = host.split(".", 3)
    if len(labels) >= 3 and labels[1] == host_label and is_uuid(labels[0]):
        return labels[0], pinned
    if len(labels) >= 4 and labels[2] == host_label and is_uuid(labels[0]) and is_uuid(labels[1]):
        return labels[1], labels[0]
    return None


def _scope_headers(scope: dict[str, Any] | Any) -> dict[str, str]:
    wanted = (b"host", b"function-id", b"function-version-id")
    out: dict[str, str] = {}
    for k, v in scope.get("headers", ()):
        lk = k.lower()
        if lk in wanted:
            out[lk.decode()] = v.decode("latin-1")
    return out


def is_gateway_request(scope: Any, host_label: str = "invocation") -> bool:
    """True for requests the gateway serves; everything else belongs to the control app."""
    if scope.get("type") != "http":
        return False
    if scope.get("path", "").startswith(GATEWAY_PREFIXES):
        return True
    return direct_target(_scope_headers(scope), host_label) is not None


_POLL_SECONDS = re.compile(r"\+?[0-9]+", re.ASCII)


def poll_seconds(headers: dict[str, str], *, sse_default: bool) -> float:
    """NVCF-POLL-SECONDS: default 60 (1200 with Accept: text/event-stream on pexec), min 1, max 3600."""
    raw = headers.get("nvcf-poll-seconds")
    if raw is None or raw.strip() == "":
        if sse_default and "text/event-stream" in headers.get("accept", "").lower():
            return float(DEFAULT_SSE_POLL_S)
        return float(DEFAULT_POLL_S)
    # NVCF parses an unsigned integer: "-1" is refused, not clamped (Python's int() would also take
    # "1_0" and non-ASCII digits)
    if not _POLL_SECONDS.fullmatch(raw.strip()):
        raise errors.BadRequestError(
            f"NVCF-POLL-SECONDS must be a whole number of seconds, got {raw!r}",
            field="NVCF-POLL-SECONDS",
            rule="integer",
        )
    digits = raw.strip().lstrip("+").lstrip("0") or "0"
    # int() refuses strings of more than 4300 digits: anything that long is over the limit anyway
    value = int(digits) if len(digits) <= 10 else MAX_POLL_S + 1
    if value > MAX_POLL_S:
        raise errors.BadRequestError(
            f"NVCF-POLL-SECONDS must be <= {MAX_POLL_S}, got {raw.strip()}",
            field="NVCF-POLL-SECONDS",
            rule=f"<= {MAX_POLL_S}",
        )
    return float(max(1, value))


def asset_ids(value: str | None) -> list[str]:
    """NVCF-INPUT-ASSET-REFERENCES: comma-separated asset UUIDs (malformed -> 400)."""
    if not value:
        return []
    ids = [part.strip() for part in value.split(",") if part.strip()]
    for asset_id in ids:
        if not is_uuid(asset_id):
            raise errors.BadRequestError(
                f"NVCF-INPUT-ASSET-REFERENCES: {asset_id!r} is not an asset id (UUID)",
                field="NVCF-INPUT-ASSET-REFERENCES",
                rule="comma-separated UUIDs",
            )
    # a UUID in capitals names the same asset, and one named twice is downloaded once (the worker
    # keeps each in a file named by its id)
    return list(dict.fromkeys(asset_id.lower() for asset_id in ids))


def forwarded_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Client headers the function sees: all but Authorization, hop-by-hop and routing headers."""
    connection_listed: set[str] = set()
    out = []
    for k, v in raw:
        name = k.decode("latin-1")
        lname = name.lower()
        if lname == "connection":
            connection_listed.update(t.strip().lower() for t in v.decode("latin-1").split(","))
        if lname in DROPPED_REQUEST_HEADERS or lname.startswith(":"):
            continue
        out.append((name, v.decode("latin-1")))
    if connection_listed:
        out = [(k, v) for k, v in out if k.lower() not in connection_listed]
    return out
