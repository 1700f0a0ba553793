"""The gRPC status of each error of the shared error tree (shared/errors.py), the proxy's one table.

NVCF's grpc-proxy answers invocation failures with gRPC codes (reference/invocation.md 3.9); its HTTP
counterpart is the problem+json table of shared/problems.py.
"""

from __future__ import annotations

import grpc

from fnplane.shared import errors

_CODES: dict[type[errors.FnplaneError], grpc.StatusCode] = {
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnauthorizedError: grpc.StatusCode.UNAUTHENTICATED,
    errors.ForbiddenError: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.ConflictError: grpc.StatusCode.ALREADY_EXISTS,
    errors.GoneError: grpc.StatusCode.NOT_FOUND,
    errors.PayloadTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UnprocessableError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.TooManyRequestsError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.GatewayTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
}

BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def status_of(error: errors.FnplaneError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def status_code(value: int) -> grpc.StatusCode:
    """A code the function answered with (an unknown number: UNKNOWN, as gRPC clients read it)."""
    return BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)
