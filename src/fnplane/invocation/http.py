"""Plain-ASGI request and response helpers of the gateway.

The gateway is a raw ASGI application rather than a framework app: it sits on the hot path of every
invocation, and all it needs is a header dict, a streaming body and a few JSON/problem answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fnplane.invocation import strict_json
from fnplane.shared import errors
from fnplane.shared.asgi import header, is_json_media_type, unsupported_media_type_detail
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, problem, problem_for, problem_headers
from fnplane.shared.wire import RequestStatus, nvcf_status

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

EXPOSE = (b"access-control-expose-headers", b"nvcf-reqid")
# a DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port
HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?")


class Request:
    __slots__ = ("headers", "method", "path", "raw_headers", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        # last value wins; callers that need repeats read raw_headers
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers
        }

    @property
    def query_string(self) -> str:
        return self.scope.get("query_string", b"").decode("latin-1")

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    @property
    def path_and_query(self) -> str:
        raw = self.scope.get("raw_path") or self.path.encode()
        path = raw.decode("latin-1")
        qs = self.query_string
        return f"{path}?{qs}" if qs else path

    def bearer(self) -> str:
        # the first Authorization, as the control API and the per-credential limiter read it (the
        # header dict keeps the last: a bogus first one was counted, and the last one authorized)
        raw = header(self.scope, b"authorization")
        value = raw.decode("latin-1") if raw is not None else None
        if not value:
            raise errors.UnauthorizedError("Header of type `authorization` was missing")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.UnauthorizedError("Unauthorized access: expected 'Authorization: Bearer <token>'")
        return token.strip()

    def base_url(self, public_url: str) -> str:
        if public_url:
            return public_url.rstrip("/")
        scheme = self.scope.get("scheme", "http")
        host = self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        elif not HOST_RE.fullmatch(host):
            # it would become the authority of a URL we hand out
            raise errors.BadRequestError(
                f"Host {host[:64]!r} is not a host name or address", field="Host", rule="host[:port]"
            )
        return f"{scheme}://{host}"

    async def read_body(self, limit: int) -> bytes:
        """The whole body (small JSON bodies of the API); over `limit` -> 413."""
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise errors.BadRequestError("client disconnected while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLargeError(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json_body(self, limit: int) -> Any:
        return strict_json.loads_request(await self.read_body(limit))


def invocation_headers(
    request_id: str, status: int, nvcf: RequestStatus | None = None
) -> list[tuple[bytes, bytes]]:
    """NVCF-REQID, NVCF-STATUS (from the HTTP status unless `nvcf` says otherwise: pending-evaluation,
    rejected) and the CORS expose header every invocation response carries."""
    return [
        (b"nvcf-reqid", request_id.encode()),
        (b"nvcf-status", (nvcf or nvcf_status(status)).value.encode()),
        EXPOSE,
    ]


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes | None = None,
) -> None:
    hdrs = list(headers)
    if content_type is not None:
        hdrs.append((b"content-type", content_type))
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, document: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    await send_bytes(send, status, body, headers, b"application/json")


def error_answer(
    error: errors.FnplaneError, instance: str, *, invocation: bool = False
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and problem+json body of an error; on invocation routes the answer also carries
    `NVCF-STATUS: errored` and the CORS expose header, as NVCF's own errors do."""
    status, document = problem_for(error, instance)
    headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode())]
    if invocation:
        headers += [(b"nvcf-status", b"errored"), EXPOSE]
    headers += [(k.lower().encode(), v.encode()) for k, v in problem_headers(error)]
    return status, headers, json.dumps(document).encode()


async def send_error(
    send: Send, error: errors.FnplaneError, instance: str, *, invocation: bool = False
) -> None:
    status, headers, body = error_answer(error, instance, invocation=invocation)
    await send_bytes(send, status, body, headers)


async def send_method_not_allowed(request: Request, allowed: list[str]) -> None:
    """405 problem+json with `Allow`: the path has routes, none for this method."""
    document = problem(405, f"{request.method} is not allowed on {request.path}", request.path)
    headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()), (b"allow", ", ".join(allowed).encode())]
    await send_bytes(request.send, 405, json.dumps(document).encode(), headers)


def names_another_media_type(request: Request) -> bool:
    """A Content-Type that is not JSON (`application/json`, `*+json`); none at all is read as JSON,
    as the control API does (control/content_type.py)."""
    content_type = request.headers.get("content-type")
    return content_type is not None and not is_json_media_type(content_type)


async def send_unsupported_media_type(request: Request) -> None:
    """415 problem+json, as NVCF's API answers a body it does not consume."""
    detail = unsupported_media_type_detail(request.headers.get("content-type", ""))
    headers = [(b"content-type", PROBLEM_CONTENT_TYPE.encode())]
    await send_bytes(request.send, 415, json.dumps(problem(415, detail, request.path)).encode(), headers)
