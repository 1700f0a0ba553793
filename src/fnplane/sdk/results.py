"""What an invocation returns: `InvocationResult` (a finished answer) and `InvocationStatus` (one poll)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

# NVCF-STATUS values
PENDING = "pending-evaluation"
IN_PROGRESS = "in-progress"
FULFILLED = "fulfilled"
ERRORED = "errored"
REJECTED = "rejected"


@dataclass(frozen=True)
class InvocationResult:
    """A finished invocation: the function's status code, headers and body (a large result's body is
    the download its 302 pointed at)."""

    request_id: str | None
    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(self._charset() or "utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def is_json(self) -> bool:
        media = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return media == "application/json" or media.endswith("+json")

    @property
    def value(self) -> Any:
        """What `invoke` returns: the decoded JSON for a JSON answer, else the bytes."""
        if self.is_json and self.content:
            return self.json()
        return self.content

    def _charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset":
                return value.strip('"') or None
        return None


@dataclass(frozen=True)
class InvocationStatus:
    """One look at a request: `status` is its NVCF-STATUS; `result` is set once it is done."""

    request_id: str
    status: str
    percent_complete: int | None = None
    position: int | None = None
    result: InvocationResult | None = field(default=None)

    @property
    def done(self) -> bool:
        return self.status not in (PENDING, IN_PROGRESS)
