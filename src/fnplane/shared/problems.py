"""RFC 7807 problem documents: the one table between FnplaneError and HTTP, read in both directions.

NVCF's control plane answers `application/problem+json` with
`type: urn:nv-boot:problem-details:<kind>`; we do the same everywhere.

* Serving (control API, gateway, worker): `problem_for(error, instance)` -> (status, document) and
  `problem_headers(error)` (`WWW-Authenticate` on 401, `Retry-After` on 429 and 503); `problem(status, ...)`
  for an answer without a domain error (a framework 404/405, a container's own error).
* Raw ASGI layers: `problem_messages(status, document, headers)` -> the two messages to send.
* Receiving (SDK): `error_from_problem(status, document)` -> the FnplaneError the document stands for,
  with its typed fields (`field`/`rule` of a 400, `retry_after_s` of a 429).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fnplane.shared import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"
# the namespace of `type`: urn:<namespace>:problem-details:<kind>
NV_BOOT = "nv-boot"

# The JSON schema of the documents `problem` and `problem_for` build, for the OpenAPI documents of the
# control API and the gateway (members beyond these, e.g. /health's `checks`, are allowed).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 7807 problem document (docs/errors.md)",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "example": "urn:nv-boot:problem-details:bad-request"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "400: the invalid field; 422: the header"},
        "rule": {"type": "string", "description": "400: the rule the field broke"},
    },
}
# where the OpenAPI documents keep it
PROBLEM_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}


def openapi_problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI response object: a problem document (`PROBLEM_SCHEMA` as `components.schemas.Problem`)."""
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_SCHEMA_REF}}}


_STATUS_BY_ERROR: dict[type[errors.FnplaneError], int] = {
    errors.BadRequestError: 400,
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.GoneError: 410,
    errors.PayloadTooLargeError: 413,
    errors.UnprocessableError: 422,
    errors.TooManyRequestsError: 429,
    errors.UnavailableError: 503,
    errors.GatewayTimeoutError: 504,
}
_ERROR_BY_STATUS: dict[int, type[errors.FnplaneError]] = {
    status: cls for cls, status in _STATUS_BY_ERROR.items()
}


def status_for(error: errors.FnplaneError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return 500


def error_class_for(status: int) -> type[errors.FnplaneError] | None:
    """The error class of an HTTP status; None for a status without one (e.g. 500)."""
    return _ERROR_BY_STATUS.get(status)


# reason phrases as the HTTP servers in front of us put them on the status line (Python 3.11's
# HTTPStatus still says "Request Entity Too Large")
_PHRASES = {413: "Payload Too Large"}


def _phrase(status: int) -> str:
    if status in _PHRASES:
        return _PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status without a reason phrase (e.g. a function's 599)
        return "Error"


def problem(
    status: int,
    detail: str | None,
    instance: str | None,
    *,
    kind: str | None = None,
    namespace: str = NV_BOOT,
) -> dict[str, Any]:
    """A problem document; `kind` defaults to the kebab-case reason phrase of `status`.

    `instance` None leaves the member out (the worker's documents have none).
    """
    phrase = _phrase(status)
    kind = kind or phrase.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": f"urn:{namespace}:problem-details:{kind}",
        "title": phrase,
        "status": status,
        "detail": detail or phrase,
    }
    if instance is not None:
        body["instance"] = instance
    return body


def problem_for(error: errors.FnplaneError, instance: str) -> tuple[int, dict[str, Any]]:
    status = status_for(error)
    body = problem(status, error.detail, instance)
    if isinstance(error, errors.BadRequestError) and error.field:
        body["field"] = error.field
        if error.rule:
            body["rule"] = error.rule
    if isinstance(error, errors.UnprocessableError) and error.field:
        body["field"] = error.field
    return status, body


def problem_headers(error: errors.FnplaneError) -> list[tuple[str, str]]:
    """The headers that go with the error's problem document."""
    headers: list[tuple[str, str]] = []
    if status_for(error) == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    if isinstance(error, errors.TooManyRequestsError | errors.UnavailableError) and error.retry_after_s:
        headers.append(("Retry-After", str(error.retry_after_s)))
    return headers


def problem_messages(
    status: int, document: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages (response start, body) that answer with a problem document, for the raw
    ASGI layers in front of the apps (admission, limits, content type)."""
    body = json.dumps(document).encode()
    raw_headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers),
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": raw_headers},
        {"type": "http.response.body", "body": body},
    )


def error_from_problem(
    status: int,
    document: Mapping[str, Any],
    *,
    retry_after: str | None = None,
    default: type[errors.FnplaneError] = errors.FnplaneError,
    fallback_detail: str = "",
) -> errors.FnplaneError:
    """The error a problem answer stands for (the inverse of `problem_for` and `problem_headers`).

    The class comes from the table (`default` for a status without one); the detail from the
    document (`detail`, else `title`, else `fallback_detail`); a 400's `field`/`rule` and a 429's
    `Retry-After` (seconds) become the error's typed fields.
    """
    detail = str(document.get("detail") or document.get("title") or fallback_detail)
    cls = error_class_for(status) or default
    if issubclass(cls, errors.BadRequestError):
        field, rule = document.get("field"), document.get("rule")
        return cls(
            detail,
            field=field if isinstance(field, str) else None,
            rule=rule if isinstance(rule, str) else None,
        )
    if issubclass(cls, errors.TooManyRequestsError | errors.UnavailableError):
        seconds = retry_after.strip() if retry_after else ""
        return cls(detail, retry_after_s=int(seconds) if seconds.isdigit() else None)
    if issubclass(cls, errors.UnprocessableError):
        field = document.get("field")
        return cls(detail, field=field if isinstance(field, str) else None)
    return cls(detail)
