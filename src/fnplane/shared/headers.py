"""HTTP header names with a meaning for the platform rather than for the function."""

from __future__ import annotations

# hop-by-hop headers (RFC 9110 7.6.1, and the legacy proxy ones): they describe one connection, so no
# proxy forwards them, in either direction
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
