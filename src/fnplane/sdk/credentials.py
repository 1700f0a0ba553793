"""The caller's credential: a fixed API key (or token), or a service account's token from `POST /token`,
cached and fetched again before it expires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

# a token is fetched again when less than this share of its lifetime is left, at most REFRESH_MAX_S
REFRESH_SHARE = 0.1
REFRESH_MAX_S = 60.0


def refresh_due(fetched_at: float, expires_in_s: float, now: float) -> bool:
    """Whether a token fetched at `fetched_at`, valid `expires_in_s`, should be replaced at `now`:
    when less than 10 % of its lifetime, capped at 60 s, is left (a 1 h token: its last minute)."""
    margin = min(REFRESH_SHARE * expires_in_s, REFRESH_MAX_S)
    return now >= fetched_at + expires_in_s - margin


class Credentials:
    """What goes into `Authorization`: `bearer()` answers from the cache and fetches a new token when
    one is due (one fetch at a time, however many calls wait)."""

    def __init__(
        self,
        api_key: str | None,
        fetch_token: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._fetch_token = fetch_token
        self._clock = clock
        self._token: str | None = None
        self._fetched_at = 0.0
        self._expires_in_s = 0.0
        self._lock = asyncio.Lock()
        # tokens fetched, and tokens the platform refused (401) before their time
        self.fetches = 0
        self.rejections = 0

    @property
    def token(self) -> str | None:
        """The cached service-account token (None before the first call, or with an API key)."""
        return self._token

    @property
    def refreshable(self) -> bool:
        return self._fetch_token is not None

    async def bearer(self) -> str | None:
        if self._fetch_token is None:
            return self._api_key
        if self._token is None or refresh_due(self._fetched_at, self._expires_in_s, self._clock()):
            async with self._lock:
                if self._token is None or refresh_due(self._fetched_at, self._expires_in_s, self._clock()):
                    await self._refresh()
        return self._token

    async def invalidate(self, rejected: str | None) -> None:
        """The platform refused `rejected` (401): fetch a new token at the next call."""
        if self._fetch_token is not None and rejected == self._token:
            self.rejections += 1
            self._token = None

    async def _refresh(self) -> None:
        assert self._fetch_token is not None
        started = self._clock()
        answer = await self._fetch_token()
        self.fetches += 1
        self._token = str(answer["access_token"])
        self._fetched_at = started
        self._expires_in_s = float(answer.get("expires_in") or 3600)
