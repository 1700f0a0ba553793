"""Server-sent events (the WHATWG `text/event-stream` format), decoded line by line as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class ServerSentEvent:
    """One event: `event` ("message" unless named), `data` (its data lines joined by newlines), `id`
    (the last event id seen on the stream, or None) and `retry` (milliseconds, or None)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> object:
        import json

        return json.loads(self.data)


class SSEDecoder:
    """Feed it lines (without their line ending); it returns an event at each blank line that ends one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._seen = False

    def decode(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._seen:
                return None
            event = ServerSentEvent(
                event=self._event or "message",
                data="\n".join(self._data),
                id=self._last_id,
                retry=self._retry,
            )
            self._event, self._data, self._retry, self._seen = "", [], None, False
            return event
        if line.startswith(":"):  # a comment (keepalive)
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        else:
            return None
        self._seen = True
        return None

    def end(self) -> ServerSentEvent | None:
        """The end of the stream: an event without its closing blank line is dispatched too."""
        return self.decode("")


def is_event_stream(response: httpx.Response) -> bool:
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "text/event-stream"


async def aiter_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of a streamed response, each as soon as its blank line arrives."""
    decoder = SSEDecoder()
    async for line in response.aiter_lines():
        event = decoder.decode(line)
        if event is not None:
            yield event
    last = decoder.end()
    if last is not None:
        yield last
