"""Timestamps as the repositories hand them out: always timezone-aware UTC.

SQLite returns naive datetimes for `DateTime(timezone=True)` columns; PostgreSQL returns aware ones.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def now_utc() -> datetime:
    return datetime.now(UTC)
