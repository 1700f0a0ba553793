"""Signed, expiring URLs the gateway hands out (asset uploadUrl, large-result Location).

HMAC-SHA256 over method, path and expiry with a key every gateway shares (kept in NATS), so a URL
signed by one gateway works on any other and after a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from fnplane.invocation.routing import result_path
from fnplane.shared import errors


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, method: str, path: str, expires: int) -> str:
        message = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, base_url: str, method: str, path: str, ttl_s: float) -> str:
        expires = int(time.time() + ttl_s)
        query = urlencode({"expires": expires, "signature": self._mac(method, path, expires)})
        return f"{base_url}{path}?{query}"

    def result_url(self, base_url: str, request_id: str, ttl_s: float) -> str:
        """The signed Location of a large result."""
        return self.sign(base_url, "GET", result_path(request_id), ttl_s)

    def verify(self, method: str, path: str, query: dict[str, str]) -> None:
        """Raise ForbiddenError unless the query carries a valid, unexpired signature for method+path."""
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            raise errors.ForbiddenError("the URL is not signed (expires missing)") from None
        # bytes: compare_digest refuses a str with non-ASCII characters (a client chooses this one)
        signature = query.get("signature", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(signature, self._mac(method, path, expires).encode()):
            raise errors.ForbiddenError("the URL signature is not valid")
        if expires < time.time():
            raise errors.ForbiddenError("the signed URL has expired")
