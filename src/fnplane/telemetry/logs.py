"""Log lines: the text format fnplane always wrote, or one JSON object a line (`--log-format json`).

    {"time": "2026-12-01T18:40:04.123Z", "level": "info", "component": "fnplane.access",
     "message": "POST /v2/nvcf/pexec/functions/... 200 3.1 ms", "request_id": "...",
     "function_id": "...", "function_version_id": "...", "account": "...", "status": 200,
     "duration_ms": 3.1, ...}

`component` is the logger's name. The ids of the request being handled come from a context variable:
`bind()` where a request starts (the gateway's request, the worker's task of one request), `annotate()`
as more becomes known (the request id is minted after admission), so every line logged while that
request runs carries them; the text format appends `request_id=...`. A line's own fields travel as
`extra={"fields": {...}}`. With tracing on, JSON lines also carry `trace_id` and `span_id`.

The access lines (one per request) go through `LineLogger`: formatted from their parts by the
formatter, not made into a LogRecord, while nothing but the process's batched handler would see them.

The format is chosen once per process (`FNPLANE_LOG_FORMAT`, `LogSettings`); the CLI exports it, so the
workers an agent starts (which inherit its environment, functions do not) log the same way.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.telemetry import tracing

FORMAT_ENV = "FNPLANE_LOG_FORMAT"
ACCESS_LOGGER = "fnplane.access"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# the fields a line's `extra={"fields": ...}` and the request context may give, in this order first
_ORDER = ("request_id", "function_id", "function_version_id", "account", "status", "duration_ms")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogSettings(BaseSettings):
    """Settings of the log lines of every fnplane command (environment prefix FNPLANE_LOG_)."""

    model_config = SettingsConfigDict(env_prefix="FNPLANE_LOG_")

    # text (as before, plus request_id= where known) or json (one object per line on stderr); the
    # workers an agent starts inherit it
    format: LogFormat = LogFormat.TEXT
    # one access line per gateway request (and gRPC call) on the logger fnplane.access; false: none
    # (lines are written in batches, without a log record each; about 3 us of gateway CPU a request)
    access: bool = True


_fields: ContextVar[dict[str, Any] | None] = ContextVar("fnplane_log_fields", default=None)


def bind(**fields: Any) -> Token[dict[str, Any] | None]:
    """Fields every line logged in this context carries (on top of those already bound); `unbind()`
    with the token where the request ends."""
    current = _fields.get()
    return _fields.set({**current, **fields} if current else fields)


def unbind(token: Token[dict[str, Any] | None]) -> None:
    _fields.reset(token)


def annotate(**fields: Any) -> None:
    """Add fields to the context bound last (seen by its later lines and whoever bound it)."""
    current = _fields.get()
    if current is not None:
        current.update(fields)


def current_fields() -> Mapping[str, Any]:
    return _fields.get() or {}


def _line_fields(own: Mapping[str, Any] | None) -> dict[str, Any]:
    bound = _fields.get()
    if not own:
        return dict(bound) if bound else {}
    return {**bound, **own} if bound else dict(own)


def rfc3339(created: float) -> str:
    """`2026-12-01T18:40:04.123Z`: RFC 3339, UTC, milliseconds."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, component, message, then the request's fields."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        # fields of the whole process (a worker's instance)
        self._static = dict(static or {})
        # format_parts() makes what format() makes of a record with those parts
        self.formats_parts = True
        # (second, its text): the time's text made once a second, not once a line
        self._second: tuple[int, str] = (-1, "")
        # what json.dumps(default=str, ensure_ascii=False) builds on every call
        self._encode = json.JSONEncoder(default=str, ensure_ascii=False).encode

    def format(self, record: logging.LogRecord) -> str:
        out = self._object(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
        )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return self._encode(out)

    def format_parts(
        self, created: float, levelname: str, name: str, message: str, own: Mapping[str, Any] | None
    ) -> str:
        """The line of a record made at `created` with this level, logger name, message and fields."""
        return self._encode(self._object(created, levelname, name, message, own))

    def _time(self, created: float) -> str:
        """rfc3339(created), whose second is formatted once: datetime.fromtimestamp() takes whole seconds
        and rounds the rest to microseconds, half to even (and a fraction that rounds up to a whole
        second carries), isoformat() then cuts to milliseconds."""
        second = math.floor(created)
        micros = round((created - second) * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached, text = self._second
        if cached != second:
            text = rfc3339(second)[:-5]  # without ".000Z"
            self._second = (second, text)
        return f"{text}.{micros // 1000:03d}Z"

    def _object(
        self, created: float, levelname: str, name: str, message: str, own: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self._time(created),
            "level": levelname.lower(),
            "component": name,
            "message": message,
        }
        fields = _line_fields(own)
        for key in _ORDER:
            if key in fields:
                out[key] = fields.pop(key)
        out.update(fields)
        for key, value in self._static.items():
            out.setdefault(key, value)
        ids = tracing.current_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        return out


class TextFormatter(logging.Formatter):
    """The text lines fnplane always wrote, with ` request_id=...` appended where one is known."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        # format_parts() spells TEXT_FORMAT itself, so it stands in for format() with that format only
        self.formats_parts = fmt == TEXT_FORMAT
        # (second, its text): strftime once a second, not once a line
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return self._with_request_id(line, getattr(record, "fields", None))

    def format_parts(
        self, created: float, levelname: str, name: str, message: str, own: Mapping[str, Any] | None
    ) -> str:
        """The line format() makes of a record made at `created` with these parts (TEXT_FORMAT only)."""
        return self._with_request_id(f"{self._asctime(created)} {levelname:<7} {name}: {message}", own)

    def _asctime(self, created: float) -> str:
        # formatTime() (no datefmt: TextFormatter takes none) of a record made at `created`, whose
        # msecs logging computes as below (gh-89047)
        second = int(created)
        cached, text = self._second
        if cached != second:
            text = time.strftime(self.default_time_format, self.converter(created))
            self._second = (second, text)
        if self.default_msec_format:
            return self.default_msec_format % (text, int((created - second) * 1000))
        return text

    @staticmethod
    def _with_request_id(line: str, own: Mapping[str, Any] | None) -> str:
        request_id = (own or {}).get("request_id") or current_fields().get("request_id")
        return f"{line} request_id={request_id}" if request_id else line


def formatter(
    fmt: LogFormat, *, text_format: str = TEXT_FORMAT, static: Mapping[str, Any] | None = None
) -> logging.Formatter:
    return JsonFormatter(static) if fmt is LogFormat.JSON else TextFormatter(text_format)


class BatchedStreamHandler(logging.StreamHandler):
    """A stream handler that formats each record at once (in its request's context) but writes many
    lines per system call: one write per request (an access line each) measured about 85 µs of gateway
    CPU per request at 32 clients on this machine, where a system call is dear. Lines wait at most
    `interval_s`; a warning or worse, a full buffer and the process's exit (logging's atexit) flush at once.
    """

    def __init__(self, stream: Any = None, *, interval_s: float = 0.2, max_bytes: int = 64 * 1024) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._max_bytes = max_bytes
        self._interval_s = interval_s
        # the flushing thread and what stops it (one of each per run: a close() ends one)
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()
        # a dictConfig() elsewhere (Granian's embedded server calls one) closes every handler and drops
        # it from logging's own exit list while the root logger keeps using it: flush at exit anyway
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        # handle() holds the handler's lock around emit()
        self._add(line, record.levelno)

    def write_line(self, line: str, levelno: int) -> None:
        """A line its formatter made from a record's parts (`LineLogger`), handled as emit() does."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line, levelno)

    def _add(self, line: str, levelno: int) -> None:
        line += self.terminator
        self._pending.append(line)
        self._pending_bytes += len(line)
        if levelno >= logging.WARNING or self._pending_bytes >= self._max_bytes:
            self._write()
        elif self._flusher is None:
            # the first line, or the first since a close() of someone else's dictConfig: the handler
            # is still in use, so it flushes again
            self._stopped = stopped = threading.Event()
            self._flusher = threading.Thread(
                target=self._flush_periodically, args=(stopped,), name="log-flush", daemon=True
            )
            self._flusher.start()

    def _write(self) -> None:
        if not self._pending:
            return
        text, self._pending, self._pending_bytes = "".join(self._pending), [], 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the reader is gone (a closed pipe): nothing to tell anyone
            pass

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _flush_periodically(self, stopped: threading.Event) -> None:
        while not stopped.wait(self._interval_s):
            self.flush()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._stopped.set()
            self._flusher = None
            self._write()
        super().close()


class LineLogger:
    """One logger's INFO lines without a LogRecord each: the access lines, one per request, where
    the record, its trip through the handlers and the generic formatter cost the gateway about 25 µs.

    While the line would reach one handler only, a BatchedStreamHandler with no filter whose formatter
    is ours, and the logger has no filter (the setup configure_logging makes), that formatter makes the
    line from its parts, byte for byte what it makes of the record, and the handler takes it as it takes
    a record's. Otherwise (another handler, a filter, pytest's capture, someone's dictConfig) the line
    goes through logging as a record. The levels decide as always: a logger set to WARNING writes none.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, msg: str, args: tuple[Any, ...], fields: Mapping[str, Any]) -> None:
        """`logger.info(msg, *args, extra={"fields": fields})`, without the caller's frame (no format
        prints it)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        sole = _sole_handler(logger, logging.INFO)
        if sole is not None:
            handler, formatter = sole
            try:
                line = formatter.format_parts(
                    time.time(), "INFO", logger.name, msg % args if args else msg, fields
                )
            except (TypeError, ValueError):
                pass  # a bad format or field: the record's way, where the handler tells stderr
            else:
                handler.write_line(line, logging.INFO)
                return
        record = logger.makeRecord(
            logger.name, logging.INFO, "", 0, msg, args, None, extra={"fields": fields}
        )
        logger.handle(record)


def _sole_handler(
    logger: logging.Logger, levelno: int
) -> tuple[BatchedStreamHandler, TextFormatter | JsonFormatter] | None:
    """The one handler a record of `logger` at `levelno` would reach (walking as Logger.callHandlers
    does) and its formatter, if nothing else would see the record and the formatter can make the line
    from its parts."""
    if logger.filters or logger.disabled:
        return None
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if levelno >= handler.level:
                if found is not None:
                    return None
                found = handler
        node = node.parent if node.propagate else None
    if not isinstance(found, BatchedStreamHandler) or found.filters:
        return None  # none at all is logging's lastResort
    formatter = found.formatter
    if not isinstance(formatter, TextFormatter | JsonFormatter) or not formatter.formats_parts:
        return None
    return found, formatter


# third-party loggers kept at INFO or above whatever the level
QUIET_LIBRARIES = ("aiosqlite", "sqlalchemy", "asyncpg", "httpcore", "hpack", "h2", "asyncio", "nats")


def configure_logging(
    level: str,
    fmt: LogFormat = LogFormat.TEXT,
    *,
    access: bool = True,
    text_format: str = TEXT_FORMAT,
    static: Mapping[str, Any] | None = None,
    batched: bool = True,
) -> None:
    """The process's root handler on stderr (as `logging.basicConfig`: nothing changes when the root
    logger already has one, e.g. under pytest); `access`: False silences the access lines; `batched`:
    lines written in batches (a process with few lines whose stderr a parent copies, a worker, writes
    each at once: its last lines must not wait for an exit the parent may cut short)."""
    handler = BatchedStreamHandler(sys.stderr) if batched else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, text_format=text_format, static=static))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for name in QUIET_LIBRARIES:
        # their debug lines are every SQL statement with its parameters (key hashes, sealed keys) and
        # every socket event: `--log-level debug` is for fnplane's own lines (a library's own higher
        # level, such as SQLAlchemy's WARNING, stays)
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.INFO:
            library.setLevel(logging.INFO)
    if not access:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    if fmt is LogFormat.JSON:
        # warnings.warn() writes to stderr by itself: as a log record it becomes a JSON line too
        logging.captureWarnings(True)
