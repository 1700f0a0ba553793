"""The polling etiquette of a 202 (NVCF's): each status GET long-polls (`NVCF-POLL-SECONDS`), polls are at
least a second apart, and a poll that itself waited a second or more is followed at once."""

from __future__ import annotations

import math

MIN_POLL_INTERVAL_S = 1.0
# NVCF-POLL-SECONDS when the caller gave none (the platform's own default is 60)
DEFAULT_POLL_SECONDS = 60
MAX_POLL_SECONDS = 3600


def pause_before_next_poll(poll_started_at: float, now: float) -> float:
    """Seconds to wait before the next status GET, given when the previous one started."""
    return max(0.0, MIN_POLL_INTERVAL_S - (now - poll_started_at))


def poll_window_s(poll_seconds: int | None, remaining_s: float | None) -> int:
    """The NVCF-POLL-SECONDS of the next poll: the caller's choice (or the default), never past the
    caller's deadline, within the platform's 1..3600."""
    window = poll_seconds or DEFAULT_POLL_SECONDS
    if remaining_s is not None:
        window = min(window, math.ceil(max(remaining_s, 0.0)))
    return max(1, min(window, MAX_POLL_SECONDS))
