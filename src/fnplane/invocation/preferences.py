"""The `Prefer` request header (RFC 7240), as far as the gateway acts on it. Pure.

    Prefer: respond-async            -> 202 at once, the result fetched later (pexec, exec)
    Prefer: respond-async, wait=10   -> the same (`wait` is accepted and ignored)

Preferences are hints: an unknown one, or a malformed one, is ignored rather than refused (RFC 7240
section 2: "a server MUST ignore preferences it does not understand"). Answers that honoured one
say so in `Preference-Applied`.
"""

from __future__ import annotations

RESPOND_ASYNC = "respond-async"
PREFERENCE_APPLIED = (b"preference-applied", RESPOND_ASYNC.encode())


def preferences(raw_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Every preference of every Prefer header, {lower-case token: value ("" without one)}; the first
    occurrence of a token wins (RFC 7240 section 2)."""
    out: dict[str, str] = {}
    for name, value in raw_headers:
        if name.lower() != b"prefer":
            continue
        for item in value.decode("latin-1").split(","):
            # parameters after ";" belong to the preference and are not used here
            token, _, rest = item.split(";", 1)[0].partition("=")
            token = token.strip().lower()
            if token and token not in out:
                out[token] = rest.strip().strip('"')
    return out


def wants_async(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    return RESPOND_ASYNC in preferences(raw_headers)
