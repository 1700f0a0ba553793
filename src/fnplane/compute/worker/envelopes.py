"""What the worker checks in a queued request before it acts on it.

Anyone who can publish to a version's queue can hand a worker an envelope, so nothing in one is
trusted: its ids name directories and subjects, its path and headers go onto the function's HTTP
connection. A refused envelope is answered (when it names a usable reply subject) with a 400 problem
carrying the seed's utils error code, then acked: it never reaches the function or the file system.

    901  request id not a UUID, or the message's subject is not its version's subject for that id
    902  method / path (the inference URL) not a token / not an origin-form path
    903  reply or body subject missing or not a plain subject
    904  function or version id not a UUID, or another version than this worker's
    905  function name with control characters
    906  NCA id missing or with control characters
    907  `sub` (the invoker) with control characters
    900  anything else: a header that is not a field, an asset id that is not a UUID
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fnplane.shared import subjects, wire

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 9110 token (methods, header names)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# control characters (CR, LF, NUL, ...) never belong in a header value or a request target
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# a NATS subject to publish to: dot-separated tokens, no wildcards, no whitespace
_SUBJECT = re.compile(r"[^.*>\s]+(\.[^.*>\s]+)*")


@dataclass(frozen=True)
class Refusal:
    error_code: int
    detail: str


def is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def usable_subject(value: str) -> bool:
    return _SUBJECT.fullmatch(value) is not None


def check_envelope(env: wire.Envelope, subject: str, version_id: str) -> Refusal | None:
    """Why this worker must not run the request (None: it may)."""
    if not is_uuid(env.request_id):
        return Refusal(901, "requestId is not a UUID")
    if not (is_uuid(env.function_id) and is_uuid(env.version_id)):
        return Refusal(904, "functionId and functionVersionId must be UUIDs")
    if env.version_id.lower() != version_id.lower():
        return Refusal(904, "the request is for another function version")
    if subject != subjects.request_subject(version_id, env.request_id):
        return Refusal(901, "the message's subject does not match its requestId and version")
    if not (usable_subject(env.reply_to) and usable_subject(env.body_from)):
        return Refusal(903, "replyTo and bodyFrom must be plain NATS subjects")
    if not _TOKEN.fullmatch(env.method):
        return Refusal(902, "method is not an HTTP token")
    if not env.path.startswith("/") or _CONTROL.search(env.path) or " " in env.path:
        return Refusal(902, "path must be an absolute path without spaces or control characters")
    if _CONTROL.search(env.function_name):
        return Refusal(905, "functionName has control characters")
    if not env.nca_id or _CONTROL.search(env.nca_id):
        return Refusal(906, "ncaId is missing or has control characters")
    if _CONTROL.search(env.subject):
        return Refusal(907, "sub has control characters")
    for name, value in env.headers:
        if not _TOKEN.fullmatch(name) or _CONTROL.search(value.replace("\t", " ")):
            return Refusal(900, "a header is not a valid field")
    for asset in env.assets:
        if not is_uuid(asset.asset_id):
            return Refusal(900, "an assetId is not a UUID")
    return None
