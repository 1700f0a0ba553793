"""What the worker tells the agent: one JSON object per line on its stdout.

    {"event": "health", "healthy": true, "detail": "GET http://127.0.0.1:41234/health: 200"}
    {"event": "metrics", "busySlotSeconds": 1.5, "slots": 4, "invocations": 3, "intervalSeconds": 5.0,
     "queueWaitSeconds": {"counts": [...], "sum": 0.02}, "requestSeconds": {"counts": [...], "sum": 0.4}}

A pipe is the simplest robust channel here: the agent learns at once when the worker dies (EOF), and a
worker whose agent died gets EPIPE and exits too.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class EventWriter:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()


def parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) and "event" in value else None
