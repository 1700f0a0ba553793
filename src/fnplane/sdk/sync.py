"""`Client`: the blocking twin of `AsyncClient` (the same methods and arguments), for scripts. An
`asyncio.Runner` of its own drives an `AsyncClient`; `stream` and `follow_logs` return plain
iterators. Not for use where an event loop already runs (a notebook, async code: use `AsyncClient`
with `await` there), nor from several threads at once. The event loop runs only during a call, so a
keepalive PINGs only while a call (or an iterator's next item) is awaited.

For a blocking HTTP/2 client with PING keepalive (e.g. for the OpenAI SDK) see
`fnplane.sdk.keepalive_http_client`: a genuine `httpx.Client`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from fnplane.sdk.client import AsyncClient
from fnplane.sdk.grpc import channel, grpc_target_for
from fnplane.sdk.keepalive import Keepalive


async def _next(iterator: AsyncIterator[Any]) -> Any:
    return await iterator.__anext__()


class Client:
    """Blocking client of one fnplane (or NVCF) endpoint; see `AsyncClient` for every method."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        scopes: list[str] | None = None,
        grpc_target: str | None = None,
        timeout_s: float = 30.0,
        http2: bool = True,
        keepalive: Keepalive | bool = False,
        retries: int = 3,
        verify: bool | str = True,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        options = {
            "client_id": client_id,
            "client_secret": client_secret,
            "scopes": scopes,
            "grpc_target": grpc_target,
            "timeout_s": timeout_s,
            "http2": http2,
            "keepalive": keepalive,
            "retries": retries,
            "verify": verify,
            "http_client": http_client,
        }
        self._runner = asyncio.Runner()
        self._async = self._runner.run(self._make(base_url, api_key, options))
        self._closed = False

    @staticmethod
    async def _make(base_url: str | None, api_key: str | None, options: dict[str, Any]) -> AsyncClient:
        # built inside the runner's loop, so httpx binds its pool (and the pinger task) to it
        return AsyncClient(base_url, api_key, **options)

    @property
    def async_client(self) -> AsyncClient:
        return self._async

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._runner.run(self._async.aclose())
            self._runner.close()

    def _iterate(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._runner.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and not self._closed:
                self._runner.run(aclose())

    def grpc_channel(self, target: str | None = None, *, tls: bool = False) -> Any:
        """A blocking grpc.Channel to the gRPC proxy."""
        return channel(grpc_target_for(self.base_url, target or self._async._grpc_target), tls=tls, aio=False)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._async, name)
        if inspect.isasyncgenfunction(method):

            @functools.wraps(method)
            def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return self._iterate(method(*args, **kwargs))

            return iterate
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._runner.run(method(*args, **kwargs))

            return call
        return method
