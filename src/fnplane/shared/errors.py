"""The error tree shared by every plane.

    FnplaneError
     ├── BadRequestError        invalid input; names the field and the rule
     ├── UnauthorizedError      missing, malformed or expired credential
     ├── ForbiddenError         valid credential without the scope or resource
     ├── NotFoundError          unknown, or not visible to the caller's account
     ├── ConflictError          already exists / state conflict
     ├── PayloadTooLargeError   body over the configured limit
     ├── TooManyRequestsError   queue full or rate limited
     ├── GatewayTimeoutError    no worker picked the request up in time
     └── UnavailableError       a dependency (NATS, database, agent) is not reachable

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


class UnauthorizedError(FnplaneError):
    pass


class ForbiddenError(FnplaneError):
    pass


class NotFoundError(FnplaneError):
    pass


class ConflictError(FnplaneError):
    pass


class PayloadTooLargeError(FnplaneError):
    pass


class TooManyRequestsError(FnplaneError):
    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class GatewayTimeoutError(FnplaneError):
    pass


class UnavailableError(FnplaneError):
    pass
