"""One endpoint's HTTP connection: httpx (HTTP/2, optionally with PING keepalive), the credential on every
request, retries, and error answers raised as the shared error tree."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from fnplane.sdk import retries
from fnplane.sdk.credentials import Credentials
from fnplane.sdk.errors import error_for, retry_after_s
from fnplane.sdk.h2fair import FairAsyncHTTPTransport
from fnplane.sdk.keepalive import AsyncKeepaliveTransport, Keepalive

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


def resolve_base_url(base_url: str | None) -> str:
    return (base_url or os.environ.get("FNPLANE_URL") or DEFAULT_BASE_URL).rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("FNPLANE_API_KEY") or os.environ.get("NVCF_API_KEY") or None


class Connection:
    """Sends requests to one base URL; `send` raises the FnplaneError of an error answer."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout_s: float,
        http2: bool,
        keepalive: Keepalive | bool,
        retries: int,
        verify: bool | str,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        self.base_url = base_url
        self.credentials = credentials
        self.timeout_s = timeout_s
        self.retries = retries
        self._owned = http_client is None
        if http_client is None:
            # HTTP/2 on an http:// URL is h2c by prior knowledge (fnplane serves it; there is no
            # ALPN without TLS, and httpx would otherwise stay on HTTP/1.1)
            http1 = not (http2 and base_url.startswith("http://"))
            transport_kwargs: dict[str, Any] = {"http1": http1, "http2": http2, "verify": verify}
            if keepalive:
                settings = keepalive if isinstance(keepalive, Keepalive) else Keepalive()
                transport: httpx.AsyncBaseTransport = AsyncKeepaliveTransport(settings, **transport_kwargs)
            else:
                transport = FairAsyncHTTPTransport(**transport_kwargs)
            http_client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)
        self.http = http_client
        parts = urlsplit(base_url)
        self.origin = (parts.scheme, parts.netloc)

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return not parts.netloc or (parts.scheme, parts.netloc) == self.origin

    async def _headers(self, headers: Any, url: str) -> tuple[httpx.Headers, str | None]:
        merged = httpx.Headers(headers)
        bearer = None
        if "authorization" not in merged and self.same_origin(url):
            bearer = await self.credentials.bearer()
            if bearer:
                merged["Authorization"] = f"Bearer {bearer}"
        return merged, bearer

    def timeout(self, read_s: float | None = None) -> httpx.Timeout:
        """The client's timeout, with a longer read timeout for a long poll (None: no read timeout)."""
        return httpx.Timeout(self.timeout_s, read=read_s)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Any = None,
        check: bool = True,
        replayable: bool | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response (its body not read yet), after retries; an error answer is read and
        raised unless `check` is False. `replayable` None: by method and Idempotency-Key."""
        kwargs.setdefault("timeout", self.timeout(self.timeout_s))
        if "://" not in url:  # a path of this endpoint (a caller's http_client has no base URL)
            url = self.base_url + url
        attempt = 0
        refreshed = False
        while True:
            merged, bearer = await self._headers(headers, url)
            may_replay = retries.replayable(method, merged) if replayable is None else replayable
            request = self.http.build_request(method, url, headers=merged, **kwargs)
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TransportError as error:
                if attempt < self.retries and retries.retry_error(error, replayable=may_replay):
                    await asyncio.sleep(retries.delay_s(attempt, None))
                    attempt += 1
                    continue
                raise
            if response.status_code == 401 and self.credentials.refreshable and not refreshed:
                # the service account's token was refused (rotated, or it expired early): once more
                # with a new one
                await response.aclose()
                await self.credentials.invalidate(bearer)
                refreshed = True
                continue
            if attempt < self.retries and retries.retry_status(response, replayable=may_replay):
                await response.aclose()
                wait = retry_after_s(response.headers.get("retry-after"))
                await asyncio.sleep(retries.delay_s(attempt, wait))
                attempt += 1
                continue
            try:
                if check and response.status_code >= 400:
                    raise error_for(response, await response.aread())
                yield response
            finally:
                await response.aclose()
            return

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The whole response (body read), raising the error of an error answer."""
        async with self.stream(method, url, **kwargs) as response:
            await response.aread()
        return response

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.send(method, url, **kwargs)
        return response.json() if response.content else None
