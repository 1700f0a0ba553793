"""Per-request bounds of the one HTTP port, applied before a request reaches the control app or the gateway.

* `CredentialLimiter`: at most N requests in flight per credential (the `Authorization` header's
  value; without one, the client's address). The control API and the gateway each have their own
  limiter, so long-polling invocations never starve the API of one credential, and one credential
  never takes every connection the server accepts. Over the limit: 429 problem+json, `Retry-After: 1`.
* The body-idle timeout is `shared.asgi.BodyGuard` with `idle_timeout_s`: while the request body is
  still arriving, a client that sends nothing for that long is answered 408 and the app sees
  `http.disconnect`, so whatever waits on the body ends and the connection is freed.

Plain ASGI: no framework, a dict lookup and a counter per request on the hot path.
"""

from __future__ import annotations

from fnplane.shared import errors
from fnplane.shared.asgi import Scope, header

RETRY_AFTER_S = 1


def credential_key(scope: Scope) -> bytes:
    """The credential a request is counted against: the token of its (first) `Authorization: Bearer`,
    however the scheme is spelled and spaced, as the planes read it; a key sent as `bearer  K` is the
    same credential as `Bearer K` (counted apart, each spelling had a limit of its own)."""
    authorization = header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            return b"bearer:" + token.strip()
        return authorization
    client = scope.get("client") or ("?", 0)
    return b"client:" + str(client[0]).encode()


class CredentialLimiter:
    """Counts requests in flight per credential; `acquire` is False when the credential is at its limit."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self._what = what
        self._in_flight: dict[bytes, int] = {}

    def acquire(self, key: bytes) -> bool:
        count = self._in_flight.get(key, 0)
        if count >= self.limit:
            return False
        self._in_flight[key] = count + 1
        return True

    def release(self, key: bytes) -> None:
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)

    def refusal(self) -> errors.TooManyRequestsError:
        return errors.TooManyRequestsError(
            f"too many concurrent {self._what} requests with this credential (at most {self.limit})",
            retry_after_s=RETRY_AFTER_S,
        )
