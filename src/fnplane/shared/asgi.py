"""Plain ASGI pieces of the raw layers in front of our apps: types, the two questions they ask of a
scope, their one way to answer with an error, and `BodyGuard`, which bounds a request body's size or
its idle time and answers for the app when either is passed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fnplane.shared import errors
from fnplane.shared.problems import problem, problem_for, problem_headers, problem_messages

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONNECTION_CLOSE = (b"connection", b"close")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) header, as sent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def may_have_body(scope: Scope) -> bool:
    """False only when the request certainly has no body: `Content-Length: 0`, or a bodiless method
    without `Content-Length` or `Transfer-Encoding` (HTTP/2 bodies carry neither)."""
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    if header(scope, b"transfer-encoding") is not None:
        return True
    return scope.get("method", "GET") not in _BODYLESS_METHODS


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or a `*+json` type, parameters aside: what NVCF's API consumes."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def unsupported_media_type_detail(content_type: str) -> str:
    return f"Content-Type '{content_type}' is not supported: send application/json"


def without_body(send: Send) -> Send:
    """`send` for a HEAD answered by its GET's handler: the status and headers (Content-Length too),
    then an empty body once."""
    ended = False

    async def send_head(message: Message) -> None:
        nonlocal ended
        if message["type"] != "http.response.body":
            await send(message)
        elif not ended:
            ended = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_head


async def send_error(send: Send, error: errors.FnplaneError, instance: str) -> None:
    """Answer with the problem document of `error` (through the one table)."""
    status, document = problem_for(error, instance)
    for message in problem_messages(status, document, problem_headers(error)):
        await send(message)


def body_too_large(limit: int) -> errors.PayloadTooLargeError:
    return errors.PayloadTooLargeError(f"the request body exceeds the limit of {limit} bytes")


class BodyGuard:
    """`receive` and `send` of one request whose body is watched while it arrives.

    * `idle_timeout_s`: no body data for that long -> 408;
    * `max_bytes`: more body than that -> 413.

    Either answers with a problem document (when no answer has started) and from then on hands the app
    `http.disconnect` and drops whatever it still sends, so the app stops and the rest of the body is
    never read. Once the body is complete, `receive` is the server's own again (the gateway waits on it
    for the client's disconnect, without a bound).

    `close_if_unread` (HTTP/1.x): an answer that starts before the body was read to its end says
    `Connection: close`. The server drops such a connection after the answer anyway; without the
    header a client may send its next request on it and see it closed without an answer.
    """

    __slots__ = (
        "_close_if_unread",
        "_done",
        "_idle_s",
        "_instance",
        "_max",
        "_receive",
        "_send",
        "_size",
        "_started",
        "refused",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        instance: str,
        *,
        idle_timeout_s: float | None = None,
        max_bytes: int | None = None,
        close_if_unread: bool = False,
    ) -> None:
        self._close_if_unread = close_if_unread
        self._receive = receive
        self._send = send
        self._instance = instance
        self._idle_s = idle_timeout_s
        self._max = max_bytes
        self._size = 0
        self._done = False
        self._started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self._done:
            return await self._receive()
        got = await (self._receive() if self._idle_s is None else self._receive_within(self._idle_s))
        if got is None:
            detail = f"no request body data arrived for {self._idle_s:g} s"
            await self._refuse(408, problem(408, detail, self._instance))
            return {"type": "http.disconnect"}
        message = got
        if message["type"] != "http.request":
            self._done = True
            return message
        self._size += len(message.get("body", b""))
        if self._max is not None and self._size > self._max:
            await self._refuse(*problem_for(body_too_large(self._max), self._instance))
            return {"type": "http.disconnect"}
        if not message.get("more_body", False):
            self._done = True
        return message

    async def _receive_within(self, timeout_s: float) -> Message | None:
        """The next message, or None after `timeout_s`. What asyncio.timeout does, with one timer
        handle and no context manager: this runs for every request body on the gateway's hot path."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(timeout_s, expire)
        try:
            return await self._receive()
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                return None  # our timer, and nobody else cancelled the task meanwhile
            raise
        finally:
            handle.cancel()

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the guard's answer is the answer
        if message["type"] == "http.response.start":
            self._started = True
            if self._close_if_unread and not self._done:
                message = {**message, "headers": [*message.get("headers", ()), CONNECTION_CLOSE]}
        await self._send(message)

    async def _refuse(
        self, status: int, document: dict[str, Any], headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.refused = True
        if not self._started:
            self._started = True
            if self._close_if_unread:
                headers = [*headers, ("connection", "close")]
            for reply in problem_messages(status, document, headers):
                await self._send(reply)
