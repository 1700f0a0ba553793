"""The error tree shared by every plane.

    FnplaneError
     ├── BadRequestError        invalid input; names the field and the rule
     │    └── FailedPreconditionError  valid, but the target's state forbids it (a DEGRADED function)
     ├── UnauthorizedError      missing, malformed or expired credential
     ├── ForbiddenError         valid credential without the scope or resource
     ├── NotFoundError          unknown, or not visible to the caller's account
     ├── ConflictError          already exists / state conflict
     ├── GoneError              existed, but is no more (a cancelled request)
     ├── PayloadTooLargeError   body over the configured limit
     ├── UnprocessableError     well-formed, but not acceptable (an Idempotency-Key reused)
     ├── TooManyRequestsError   queue full or rate limited; may say when to retry
     ├── GatewayTimeoutError    no worker picked the request up in time
     └── UnavailableError       a dependency (NATS, database, agent) is not reachable, or the
                                gateway is at its concurrency limit; may say when to retry

Domain errors know nothing about HTTP; each edge translates them once
(REST: `fnplane.shared.problems`).
"""

from __future__ import annotations


class FnplaneError(Exception):
    """Root of every error fnplane raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequestError(FnplaneError):
    def __init__(self, detail: str, *, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(detail)
        self.field = field
        self.rule = rule


class FailedPreconditionError(BadRequestError):
    """HTTP answers it 400 as NVCF does; gRPC has a code of its own (FAILED_PRECONDITION)."""


class UnauthorizedError(FnplaneError):
    pass


class ForbiddenError(FnplaneError):
    pass


class NotFoundError(FnplaneError):
    pass


class ConflictError(FnplaneError):
    pass


class GoneError(FnplaneError):
    pass


class PayloadTooLargeError(FnplaneError):
    pass


class UnprocessableError(FnplaneError):
    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class TooManyRequestsError(FnplaneError):
    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class GatewayTimeoutError(FnplaneError):
    pass


class UnavailableError(FnplaneError):
    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
