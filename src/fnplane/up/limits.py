"""Per-request bounds of the one HTTP port, applied before a request reaches the control app or the gateway.

* `CredentialLimiter`: at most N requests in flight per credential (the `Authorization` header's
  value; without one, the client's address). The control API and the gateway each have their own
  limiter, so long-polling invocations never starve the API of one credential, and one credential
  never takes every connection the server accepts. Over the limit: 429 problem+json, `Retry-After: 1`.
* `BodyIdleGuard`: while the request body is still arriving, a client that sends nothing for
  `timeout_s` is answered 408 (when no answer has started) and the app sees `http.disconnect`, so
  whatever waits on the body ends and the connection is freed. Once the body is complete, `receive`
  is the server's own again (the gateway waits on it for the client's disconnect, without a bound).

Both are plain ASGI wrappers: no framework, a dict lookup and a counter per request on the hot path.
"""

from __future__ import annotations

import asyncio

from fnplane.shared import errors
from fnplane.shared.asgi import Message, Receive, Scope, Send, header
from fnplane.shared.problems import problem, problem_messages

RETRY_AFTER_S = 1


def credential_key(scope: Scope) -> bytes:
    authorization = header(scope, b"authorization")
    if authorization:
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


class BodyIdleGuard:
    """`receive` and `send` of one request whose body may stall; see the module docstring."""

    __slots__ = ("_done", "_instance", "_receive", "_send", "_started", "_timeout_s", "timed_out")

    def __init__(self, receive: Receive, send: Send, timeout_s: float, instance: str) -> None:
        self._receive = receive
        self._send = send
        self._timeout_s = timeout_s
        self._instance = instance
        self._done = False
        self._started = False
        self.timed_out = False

    async def receive(self) -> Message:
        if self._done:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._timeout_s)
        except TimeoutError:
            self._done = self.timed_out = True
            if not self._started:
                self._started = True
                detail = f"no request body data arrived for {self._timeout_s:g} s"
                for reply in problem_messages(408, problem(408, detail, self._instance)):
                    await self._send(reply)
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return  # the 408 is the answer; whatever the app still sends is dropped
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)
