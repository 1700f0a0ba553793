"""fnplane.telemetry.logs: the JSON and text formats, and the request context every line carries."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from fnplane.invocation.request_telemetry import route_kind, route_template
from fnplane.telemetry import logs, tracing
from fnplane.telemetry.logs import BatchedStreamHandler


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("fnplane.test", logging.WARNING, __file__, 1, message, args or ("world",), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_json_line_has_time_level_component_message() -> None:
    line = json.loads(logs.JsonFormatter().format(record()))
    assert list(line) == ["time", "level", "component", "message"]
    assert line["level"] == "warning"
    assert line["component"] == "fnplane.test"
    assert line["message"] == "hello world"
    assert line["time"].endswith("Z")
    assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0  # RFC 3339, UTC


def test_a_json_line_carries_the_bound_request_and_its_own_fields_in_order() -> None:
    token = logs.bind(function_id="f", account="nca")
    try:
        logs.annotate(request_id="r", function_version_id="v")
        rec = record(fields={"status": 200, "duration_ms": 1.5, "route": "pexec"})
        line = json.loads(logs.JsonFormatter(static={"instance_id": "i"}).format(rec))
    finally:
        logs.unbind(token)
    assert list(line)[4:] == [
        "request_id", "function_id", "function_version_id", "account", "status", "duration_ms", "route",
        "instance_id",
    ]  # fmt: skip
    assert line["status"] == 200 and line["request_id"] == "r"
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record()))  # unbound again


def test_a_json_line_holds_the_traceback_and_any_text_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        rec = record("é %s", "ü", exc_info=sys.exc_info())
    text = logs.JsonFormatter().format(rec)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "é ü"
    assert "ValueError: bad" in line["exception"]


def test_no_trace_ids_while_tracing_is_off() -> None:
    assert not tracing.enabled()
    assert tracing.current_ids() is None
    assert tracing.inject() is None
    assert "trace_id" not in json.loads(logs.JsonFormatter().format(record()))


def test_the_text_line_is_as_before_plus_the_request_id() -> None:
    formatter = logs.TextFormatter("%(levelname)s %(name)s: %(message)s")
    assert formatter.format(record()) == "WARNING fnplane.test: hello world"
    token = logs.bind(request_id="r1")
    try:
        assert formatter.format(record()) == "WARNING fnplane.test: hello world request_id=r1"
    finally:
        logs.unbind(token)
    assert formatter.format(record(fields={"request_id": "r2"})).endswith(" request_id=r2")


async def test_concurrent_requests_keep_their_own_fields() -> None:
    seen: dict[str, str] = {}

    async def handle(rid: str) -> None:
        token = logs.bind(function_id="f")
        try:
            logs.annotate(request_id=rid)
            await asyncio.sleep(0)
            seen[rid] = json.loads(logs.JsonFormatter().format(record()))["request_id"]
        finally:
            logs.unbind(token)

    await asyncio.gather(*(handle(f"r{i}") for i in range(5)))
    assert seen == {f"r{i}": f"r{i}" for i in range(5)}


def test_the_log_format_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    assert logs.LogSettings().format is logs.LogFormat.JSON
    monkeypatch.delenv(logs.FORMAT_ENV)
    assert logs.LogSettings().format is logs.LogFormat.TEXT


def test_tracing_needs_an_otlp_endpoint() -> None:
    assert not tracing.endpoint_configured({})
    assert tracing.endpoint_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.endpoint_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.endpoint_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )


def test_access_lines_name_the_route_and_spans_its_template() -> None:
    fid = "6f2c0a4e-3b1d-4a59-9b7e-2d0c8c1f0a11"
    assert route_kind(f"/v2/nvcf/pexec/functions/{fid}", False) == "pexec"
    assert route_kind(f"/v2/nvcf/exec/functions/{fid}/versions/{fid}", False) == "exec"
    assert route_kind(f"/v2/nvcf/pexec/status/{fid}", False) == "pexec-status"
    assert route_kind("/v2/nvcf/assets", False) == "assets"
    assert route_kind("/anything/at/all", True) == "direct"
    assert route_template(f"/v2/nvcf/pexec/functions/{fid}/versions/{fid}") == (
        "/v2/nvcf/pexec/functions/{id}/versions/{id}"
    )


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(name)
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log


def test_the_batched_handler_writes_many_lines_per_call_and_warnings_at_once() -> None:
    stream = _CountingStream()
    handler = BatchedStreamHandler(stream, interval_s=3600)  # no periodic flush within the test
    log = _logger("fnplane.test.batched", handler)
    try:
        for n in range(100):
            log.info("line %d", n)
        assert stream.writes == 0  # formatted, waiting
        log.warning("now")  # a warning goes out at once, with what waited before it
        assert stream.writes == 1
        assert stream.getvalue().splitlines() == [*(f"line {n}" for n in range(100)), "now"]
        log.info("at exit")
    finally:
        log.removeHandler(handler)
        handler.close()  # logging's atexit closes every handler: nothing waiting is lost
    assert stream.getvalue().endswith("at exit\n")


def test_the_batched_handler_writes_waiting_lines_within_its_interval() -> None:
    stream = _CountingStream()
    handler = BatchedStreamHandler(stream, interval_s=0.05)
    log = _logger("fnplane.test.batched.periodic", handler)
    try:
        log.info("later")
        deadline = time.monotonic() + 10
        while "later" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "later\n"
    finally:
        log.removeHandler(handler)
        handler.close()


def test_the_batched_handler_keeps_flushing_after_someone_elses_dict_config_closed_it() -> None:
    stream = _CountingStream()
    handler = BatchedStreamHandler(stream, interval_s=0.05)
    log = _logger("fnplane.test.batched.reconfigured", handler)
    try:
        log.info("before")
        handler.close()  # what logging.config.dictConfig() does to every existing handler
        assert stream.getvalue() == "before\n"
        log.info("after")  # the logger still holds the handler
        deadline = time.monotonic() + 10
        while "after" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "before\nafter\n"
    finally:
        log.removeHandler(handler)
        handler.close()


# a time whose milliseconds logging truncates (…123.9 ms: 123) and whose second starts a new minute
LINE_TIME = 1764614400.1239


@pytest.fixture
def line_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logs.LineLogger, _CountingStream]]:
    """A LineLogger whose only handler is a BatchedStreamHandler, as configure_logging sets it up."""
    monkeypatch.setattr(time, "time", lambda: LINE_TIME)  # LogRecord and LineLogger read the same
    stream = _CountingStream()
    handler = BatchedStreamHandler(stream, interval_s=3600)
    # outside logging's registry: pytest's capture attaches its handlers to every registered logger that
    # does not propagate
    log = logging.Logger("fnplane.test.lines", logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    try:
        yield logs.LineLogger(log), stream
    finally:
        handler.close()


@contextlib.contextmanager
def records_made() -> Iterator[list[logging.LogRecord]]:
    """The LogRecords made while the block runs."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(factory(*args, **kwargs))
        return made[-1]

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


@pytest.mark.parametrize("fmt", [logs.LogFormat.TEXT, logs.LogFormat.JSON])
def test_a_line_made_from_its_parts_is_the_records_line_byte_for_byte(
    fmt: logs.LogFormat, line_logger: tuple[logs.LineLogger, _CountingStream]
) -> None:
    lines, stream = line_logger
    (handler,) = lines.logger.handlers
    handler.setFormatter(logs.formatter(fmt, static={"instance_id": "i"}))
    fields = {"method": "POST", "route": "pexec", "path": "/p/é", "status": 200, "duration_ms": 3.25}
    token = logs.bind(function_id="f", account="nca")
    try:
        logs.annotate(request_id="r1")
        with records_made() as made:
            lines.info("%s %s %s %s %.1f ms", ("POST", "/p/é", "pexec", 200, 3.25), fields)
            assert made == []  # formatted from its parts: no LogRecord
            handler.addFilter(lambda record: True)  # a filter must see a record: logging makes one
            lines.info("%s %s %s %s %.1f ms", ("POST", "/p/é", "pexec", 200, 3.25), fields)
            assert len(made) == 1
    finally:
        logs.unbind(token)
    handler.flush()
    fast, through_logging = stream.getvalue().splitlines()
    assert fast == through_logging
    if fmt is logs.LogFormat.TEXT:
        second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(LINE_TIME))
        assert fast == f"{second},123 INFO    fnplane.test.lines: POST /p/é pexec 200 3.2 ms request_id=r1"
    else:
        assert json.loads(fast)["time"] == "2025-12-01T18:40:00.123Z"


def test_a_line_goes_through_logging_when_another_handler_would_see_it(
    line_logger: tuple[logs.LineLogger, _CountingStream], caplog: pytest.LogCaptureFixture
) -> None:
    lines, stream = line_logger
    (handler,) = lines.logger.handlers
    handler.setFormatter(logs.TextFormatter())
    lines.logger.parent, lines.logger.propagate = logging.getLogger(), True  # pytest's capture sees it too
    caplog.set_level(logging.INFO, lines.logger.name)
    lines.info("%s", ("seen twice",), {"request_id": "r2"})
    handler.flush()
    assert stream.getvalue().endswith("fnplane.test.lines: seen twice request_id=r2\n")
    (record,) = [r for r in caplog.records if r.name == lines.logger.name]
    assert record.fields == {"request_id": "r2"}  # type: ignore[attr-defined]


def test_a_logger_set_to_warning_writes_no_line(line_logger: tuple[logs.LineLogger, _CountingStream]) -> None:
    lines, stream = line_logger
    lines.logger.handlers[0].setFormatter(logs.TextFormatter())
    lines.logger.setLevel(logging.WARNING)  # what FNPLANE_LOG_ACCESS=false does to the access logger
    lines.info("%s", ("nothing",), {})
    lines.logger.handlers[0].flush()
    assert stream.getvalue() == ""


def test_lines_made_from_their_parts_are_batched_and_written_at_close(
    line_logger: tuple[logs.LineLogger, _CountingStream],
) -> None:
    lines, stream = line_logger
    (handler,) = lines.logger.handlers
    handler.setFormatter(logs.TextFormatter())
    for n in range(50):
        lines.info("line %d", (n,), {})
    assert stream.writes == 0  # waiting for the flush interval
    handler.close()  # logging's atexit: nothing waiting is lost
    assert stream.writes == 1
    assert [line.rsplit(": ", 1)[1] for line in stream.getvalue().splitlines()] == [
        f"line {n}" for n in range(50)
    ]


@pytest.mark.parametrize(
    "created",
    [LINE_TIME, 1764614400.9995, 1764614400.9999995, 1764614400.99999949, 1764614400.0000005, 1764614401.0],
)
def test_a_json_lines_time_is_rfc3339_of_its_moment_across_second_boundaries(created: float) -> None:
    formatter = logs.JsonFormatter()
    formatter.format_parts(created - 1, "INFO", "c", "m", None)  # the second before is the one known
    line = json.loads(formatter.format_parts(created, "INFO", "c", "m", None))
    assert line["time"] == logs.rfc3339(created)  # datetime's own rounding, cut to milliseconds


def test_debug_is_for_fnplane_lines_not_every_sql_statement() -> None:
    """`--log-level debug`: the database drivers' debug lines carry each statement's parameters (key
    hashes, sealed keys); they stay at INFO or above."""
    saved = {name: logging.getLogger(name).level for name in logs.QUIET_LIBRARIES}
    try:
        logging.getLogger("sqlalchemy").setLevel(logging.WARNING)  # as SQLAlchemy sets its own
        logs.configure_logging("debug")
        for name in ("aiosqlite", "sqlalchemy.engine", "httpcore.connection"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        # a library's own higher level stays: its INFO lines (pool events) are not wanted either
        assert not logging.getLogger("sqlalchemy.pool").isEnabledFor(logging.INFO)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
