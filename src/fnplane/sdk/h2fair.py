"""HTTP/2 reads that do not make a response wait for someone else's.

httpcore (1.0) reads an HTTP/2 connection under one read lock, handed to its waiters in turn: the
holder reads the socket and queues each frame for its stream. A request whose frames were queued while
it waited for the lock still waits for the lock, and if a waiter ahead of it found nothing and went on
to read the socket, until that reader's next frame arrives: an SSE event arrives one event later, a
finished invocation only when another one on the connection answers (seconds late, with long polls).

`FairAsyncHTTPTransport` is httpx's transport whose HTTP/2 connections wait differently: while another
request is reading, a request waits for that read to end (not for the lock), then looks at its own
queue first; only when nobody is reading does it read itself. Still only requests read, one at a time.
A request body out of flow-control credit waits the same way for the read that brings its
WINDOW_UPDATE (httpcore's own then read the socket once more, and a connection whose streams were all
sending stalled until the server sent something else). It depends on httpx's transport `_pool` and on
httpcore's `AsyncHTTPConnection._connection`, `AsyncHTTP2Connection._events`, `_h2_state`,
`_receive_events`, `_receive_stream_event` and `_wait_for_outgoing_flow` (pinned in pyproject).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h2.events
import httpcore
import httpx
from httpcore._async.http2 import AsyncHTTP2Connection


class _Reads:
    """The reads in progress on one HTTP/2 connection, and an event set when one ends."""

    def __init__(self) -> None:
        self.active = 0
        self.ended = asyncio.Event()

    def end(self) -> None:
        self.active -= 1
        ended, self.ended = self.ended, asyncio.Event()
        ended.set()


def make_fair(connection: AsyncHTTP2Connection) -> None:
    """Give this connection (only: instance attributes) the waiting described above."""
    reads = _Reads()
    receive_events = connection._receive_events
    events: dict[int, list[Any]] = connection._events

    async def tracked_receive_events(request: httpcore.Request, stream_id: int | None = None) -> None:
        # also the path of a request body waiting for flow-control window (stream_id None)
        reads.active += 1
        try:
            await receive_events(request, stream_id)
        finally:
            reads.end()

    async def receive_stream_event(request: httpcore.Request, stream_id: int) -> Any:
        while not events.get(stream_id):
            if reads.active:
                await reads.ended.wait()  # then our own queue first (that read may have filled it)
            else:
                await tracked_receive_events(request, stream_id)
        event = events[stream_id].pop(0)
        if isinstance(event, h2.events.StreamReset):
            raise httpcore.RemoteProtocolError(event)
        return event

    async def wait_for_outgoing_flow(request: httpcore.Request, stream_id: int) -> int:
        # a request body out of flow-control credit: httpcore's own waits for the read lock and
        # then reads the socket again even when the read it waited for brought the WINDOW_UPDATE,
        # so with every stream sending, an upload stalled until the server sent anything else
        state = connection._h2_state
        flow = min(state.local_flow_control_window(stream_id), state.max_outbound_frame_size)
        while flow == 0:
            if reads.active:
                await reads.ended.wait()
            else:
                await tracked_receive_events(request)
            flow = min(state.local_flow_control_window(stream_id), state.max_outbound_frame_size)
        return int(flow)

    connection._receive_events = tracked_receive_events  # type: ignore[method-assign]
    connection._receive_stream_event = receive_stream_event  # type: ignore[method-assign]
    connection._wait_for_outgoing_flow = wait_for_outgoing_flow  # type: ignore[method-assign]


class _FairHTTPConnection(httpcore.AsyncHTTPConnection):
    """httpcore's connection, whose HTTP/2 connection is made fair as it is created (before any
    request reads it)."""

    @property
    def _connection(self) -> Any:
        return self.__dict__.get("_connection")

    @_connection.setter
    def _connection(self, value: Any) -> None:
        if isinstance(value, AsyncHTTP2Connection):
            make_fair(value)
        self.__dict__["_connection"] = value


class FairAsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` whose HTTP/2 connections read fairly (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool: Any = self._pool
        create_connection = pool.create_connection

        def create_fair_connection(origin: httpcore.Origin) -> Any:
            connection = create_connection(origin)
            if type(connection) is httpcore.AsyncHTTPConnection:  # not a proxy's
                connection.__class__ = _FairHTTPConnection
            return connection

        pool.create_connection = create_fair_connection
