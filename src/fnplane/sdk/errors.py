"""The SDK's errors: the classes of the shared error tree (`fnplane.shared.errors`), raised from the
platform's problem+json answers through its one table (`fnplane.shared.problems.error_from_problem`).

    FnplaneError                 every error below carries the answer's details:
     ├── BadRequestError ...       .status (int), .title, .detail, .problem (the problem+json dict),
     ├── ... (the shared tree)     .request_id (NVCF-REQID, or None), .retry_after (seconds, or None)
     ├── ApiError                  any other error status (500, 502, a function's own 418)
     ├── NotAnEventStreamError     stream() got an answer without events (.status, .headers, .content)
     └── DeploymentFailedError     wait_until_active saw ERROR (.version: the version, healthInfo)

`wait_until_active` and `invoke` past their `timeout_s` raise GatewayTimeoutError.
"""

from __future__ import annotations

from typing import Any

import httpx

from fnplane.shared.errors import (
    BadRequestError,
    ConflictError,
    FailedPreconditionError,
    FnplaneError,
    ForbiddenError,
    GatewayTimeoutError,
    GoneError,
    NotFoundError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    UnprocessableError,
)
from fnplane.shared.problems import error_from_problem

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "DeploymentFailedError",
    "FailedPreconditionError",
    "FnplaneError",
    "ForbiddenError",
    "GatewayTimeoutError",
    "GoneError",
    "NotAnEventStreamError",
    "NotFoundError",
    "PayloadTooLargeError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UnprocessableError",
    "error_for",
    "retry_after_s",
]


class ApiError(FnplaneError):
    """An error status without a more specific class (e.g. 500)."""


class NotAnEventStreamError(FnplaneError):
    """`stream()` was answered without any event: not `text/event-stream`, e.g. a function that
    answered JSON, or a pexec 202 once the poll window ended (`.request_id` then polls its status).
    `.status`, `.headers` and `.content` are the answer's."""

    def __init__(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type") or "none"
        super().__init__(
            f"the answer ({response.status_code}, content type {content_type}) is not an event stream"
        )
        self.status = response.status_code
        self.headers = response.headers
        self.content = response.content
        self.title = "Not an event stream"
        self.problem: dict[str, Any] = {}
        self.request_id = response.headers.get("nvcf-reqid")
        self.retry_after = None


class DeploymentFailedError(FnplaneError):
    """The version went to ERROR while `wait_until_active` waited; `.version` is its last state,
    `.reasons` the errors of its deployment's healthInfo."""

    def __init__(self, detail: str, version: dict[str, Any], reasons: list[str] | None = None) -> None:
        super().__init__(detail)
        self.version = version
        self.reasons = reasons or []
        self.status = None
        self.title = "Deployment failed"
        self.problem: dict[str, Any] = {}
        self.request_id = None
        self.retry_after = None


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` in seconds (delta-seconds only; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_for(response: httpx.Response, content: bytes | None = None) -> FnplaneError:
    """The FnplaneError of an error answer (`content`: its body, when the response was streamed)."""
    body = response.content if content is None else content
    problem: Any = {}
    if body:
        try:
            problem = httpx.Response(200, content=body).json()
        except ValueError:
            problem = {}
    if not isinstance(problem, dict):
        problem = {}
    if not problem and body:
        # a function's own error body (not problem+json): keep its text as the detail
        text = body[:2000].decode("utf-8", "replace").strip()
        fallback = text or response.reason_phrase
    else:
        fallback = response.reason_phrase
    error = error_from_problem(
        response.status_code,
        problem,
        retry_after=response.headers.get("retry-after"),
        default=ApiError,
        fallback_detail=fallback,
    )
    error.status = response.status_code  # type: ignore[attr-defined]
    error.title = str(problem.get("title") or response.reason_phrase)  # type: ignore[attr-defined]
    error.problem = problem  # type: ignore[attr-defined]
    error.request_id = response.headers.get("nvcf-reqid")  # type: ignore[attr-defined]
    error.retry_after = retry_after_s(response.headers.get("retry-after"))  # type: ignore[attr-defined]
    return error


def timeout_error(detail: str, *, request_id: str | None = None) -> GatewayTimeoutError:
    """A GatewayTimeoutError raised by the SDK itself (a deadline of the caller passed)."""
    error = GatewayTimeoutError(detail)
    error.status = 504  # type: ignore[attr-defined]
    error.title = "Gateway Timeout"  # type: ignore[attr-defined]
    error.problem = {}  # type: ignore[attr-defined]
    error.request_id = request_id  # type: ignore[attr-defined]
    error.retry_after = None  # type: ignore[attr-defined]
    return error


def not_found_error(detail: str) -> NotFoundError:
    """A NotFoundError raised by the SDK itself (what the caller named is not in the API's answer)."""
    error = NotFoundError(detail)
    error.status = 404  # type: ignore[attr-defined]
    error.title = "Not Found"  # type: ignore[attr-defined]
    error.problem = {}  # type: ignore[attr-defined]
    error.request_id = None  # type: ignore[attr-defined]
    error.retry_after = None  # type: ignore[attr-defined]
    return error
