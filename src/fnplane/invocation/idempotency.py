"""Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): the header's rules, the
fingerprint of a request, and settling a key's outcome so later requests replay it. Pure except
`settle()`, which writes through the buckets.

A key belongs to an account: the bucket key is `<nca>.<sha256(key)>`. Its record holds the first
request's fingerprint and id, and once a gateway saw the final status record (answering a caller, a
status poll or a cancel), its final status and response (inline, or the object the status record
points to). A request with the same key and fingerprint joins or replays; another fingerprint -> 422.
"""

from __future__ import annotations

import hashlib

from fnplane.bus.buckets import Buckets
from fnplane.shared import errors, subjects, wire

HEADER = "idempotency-key"
HEADER_NAME = "Idempotency-Key"
MAX_KEY_CHARS = 255


def parse_key(headers: dict[str, str]) -> str | None:
    """The key (a structured-field string, `"..."`; a bare token is accepted too), or None."""
    raw = headers.get(HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not value or len(value) > MAX_KEY_CHARS or not all(" " <= c <= "~" for c in value):
        raise errors.BadRequestError(
            f"{HEADER_NAME} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
            field=HEADER_NAME,
            rule=f'"string" of 1-{MAX_KEY_CHARS} printable ASCII characters',
        )
    return value


def bucket_key(nca_id: str, key: str) -> str:
    return subjects.idempotency_key(nca_id, hashlib.sha256(key.encode()).hexdigest())


def fingerprint(method: str, target: str, body: bytes) -> str:
    """What makes two requests "the same": method, target (function, version, path and query) and
    body. Headers other than the key are not part of it (clients add their own per attempt)."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), target.encode("latin-1", errors="replace")):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(hashlib.sha256(body).digest())
    return digest.hexdigest()


def check_same(record: wire.IdempotencyRecord, fp: str) -> None:
    if record.fingerprint != fp:
        raise errors.UnprocessableError(
            f"this {HEADER_NAME} was already used with another request (a different method, path or "
            "body); use a new key for a new request",
            field=HEADER_NAME,
        )


async def settle(stores: Buckets, record: wire.StatusRecord) -> None:
    """Keep a final outcome under its idempotency key (if it has one) before the status record that
    holds it is answered and forgotten."""
    if record.idempotency is None or not record.is_final:
        return
    key = await stores.get_idempotency(record.idempotency)
    if key is None or key.status is not None or key.request_id != record.request_id:
        return
    await stores.put_idempotency(
        record.idempotency,
        wire.IdempotencyRecord(
            fingerprint=key.fingerprint,
            request_id=key.request_id,
            function_id=key.function_id,
            version_id=key.version_id,
            nca_id=key.nca_id,
            status=record.status,
            response=record.response,
            percent_complete=record.percent_complete,
        ),
    )
