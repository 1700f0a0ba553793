"""RFC 7807 problem documents: the one table from FnplaneError to HTTP status.

NVCF's control plane answers `application/problem+json` with
`type: urn:nv-boot:problem-details:<kind>`; we do the same everywhere.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fnplane.shared import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"

_STATUS_BY_ERROR: dict[type[errors.FnplaneError], int] = {
    errors.BadRequestError: 400,
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.PayloadTooLargeError: 413,
    errors.TooManyRequestsError: 429,
    errors.UnavailableError: 503,
    errors.GatewayTimeoutError: 504,
}


def status_for(error: errors.FnplaneError) -> int:
    for cls in type(error).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return 500


def problem(
    status: int,
    detail: str | None,
    instance: str | None = None,
    *,
    kind: str | None = None,
    source: str = "nv-boot",
) -> dict[str, Any]:
    """A problem document `urn:<source>:problem-details:<kind>`; `kind` defaults to the kebab-case
    reason phrase of `status`. The worker's own documents name their source as NVCF's utils does
    (`nvcf-worker-service`, `inference-service`, `inference-connection`) and have no `instance`."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    kind = kind or phrase.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": f"urn:{source}:problem-details:{kind}",
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
    return status, body
