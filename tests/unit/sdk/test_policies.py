"""The SDK's pure decisions: poll pacing, retries, token refresh, SSE decoding, request bodies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from fnplane.sdk import polling, retries
from fnplane.sdk.client import function_body, parse_duration
from fnplane.sdk.credentials import Credentials, refresh_due
from fnplane.sdk.invocation import structured_string
from fnplane.sdk.results import InvocationResult
from fnplane.sdk.sse import ServerSentEvent, aiter_events


def test_polls_are_a_second_apart_and_a_long_poll_is_followed_at_once() -> None:
    assert polling.pause_before_next_poll(10.0, 10.2) == pytest.approx(0.8)  # an answer at once
    assert polling.pause_before_next_poll(10.0, 11.0) == 0.0  # the poll itself waited a second
    assert polling.pause_before_next_poll(10.0, 40.0) == 0.0


def test_the_poll_window_stays_within_the_deadline_and_the_platform_bounds() -> None:
    assert polling.poll_window_s(None, None) == polling.DEFAULT_POLL_SECONDS
    assert polling.poll_window_s(5, None) == 5
    assert polling.poll_window_s(30, 2.2) == 3
    assert polling.poll_window_s(30, 0.0) == 1
    assert polling.poll_window_s(10_000, None) == 3600


def test_what_is_retried() -> None:
    none = httpx.Headers()
    keyed = httpx.Headers({"Idempotency-Key": '"k"'})
    assert retries.replayable("GET", none) and retries.replayable("delete", none)
    assert not retries.replayable("POST", none) and retries.replayable("POST", keyed)
    gateway_busy = httpx.Response(503, headers={"Retry-After": "2"})
    function_503 = httpx.Response(503, headers={"NVCF-REQID": "r"})
    assert retries.retry_status(gateway_busy, replayable=False)  # never accepted
    assert not retries.retry_status(function_503, replayable=False)  # the function ran
    assert retries.retry_status(function_503, replayable=True)
    assert not retries.retry_status(httpx.Response(500), replayable=True)
    assert retries.retry_error(httpx.ConnectError("refused"), replayable=False)
    assert not retries.retry_error(httpx.ReadError("reset"), replayable=False)
    assert retries.retry_error(httpx.ReadError("reset"), replayable=True)


def test_retry_after_is_honoured_and_capped() -> None:
    assert retries.delay_s(0, 2.0) == 2.0
    assert retries.delay_s(0, 3600.0) == retries.MAX_RETRY_AFTER_S
    assert [retries.delay_s(n, None) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_token_is_refreshed_in_the_last_tenth_of_its_life_at_most_a_minute() -> None:
    assert not refresh_due(0.0, 3600.0, 3539.0)
    assert refresh_due(0.0, 3600.0, 3541.0)  # the last minute of an hour
    assert not refresh_due(0.0, 10.0, 8.9)
    assert refresh_due(0.0, 10.0, 9.1)  # the last second of ten


def test_credentials_fetch_once_and_again_when_due() -> None:
    now = [0.0]
    answers = iter([{"access_token": "t1", "expires_in": 100}, {"access_token": "t2", "expires_in": 100}])

    async def fetch() -> dict:
        return next(answers)

    async def run() -> list[str | None]:
        credentials = Credentials(None, fetch, clock=lambda: now[0])
        seen = [await credentials.bearer(), await credentials.bearer()]
        now[0] = 91.0
        seen.append(await credentials.bearer())
        await credentials.invalidate("t1")  # an old token refused: nothing to do
        seen.append(await credentials.bearer())
        assert credentials.fetches == 2 and credentials.rejections == 0
        return seen

    assert asyncio.run(run()) == ["t1", "t1", "t2", "t2"]


def decode_lines(lines: list[str]) -> list[ServerSentEvent]:
    async def decode() -> list[ServerSentEvent]:
        response = httpx.Response(200, content="\r\n".join(lines).encode())
        return [event async for event in aiter_events(response)]

    return asyncio.run(decode())


def test_sse_events_are_decoded_as_the_format_says() -> None:
    lines = [": comment", "id: 1", "event: token", "data: a", "data:b", "", "data: x", "retry: 10", ""]
    assert list(decode_lines(lines)) == [
        ServerSentEvent(event="token", data="a\nb", id="1"),
        ServerSentEvent(data="x", id="1", retry=10),
    ]
    assert list(decode_lines(["data: no blank line at the end"])) == [
        ServerSentEvent(data="no blank line at the end")
    ]
    assert list(decode_lines(["", ""])) == []


def test_invocation_results_decode_json_or_give_bytes() -> None:
    json_result = InvocationResult("r", 200, httpx.Headers({"content-type": "application/json"}), b'{"a": 1}')
    raw = InvocationResult("r", 200, httpx.Headers({"content-type": "application/zip"}), b"PK")
    assert json_result.value == {"a": 1} and raw.value == b"PK"
    latin = InvocationResult(
        None, 200, httpx.Headers({"content-type": "text/plain; charset=latin-1"}), b"\xe9"
    )
    assert latin.text == "é" and latin.value == b"\xe9"


def test_bodies_keywords_and_durations() -> None:
    assert function_body(
        {"inference_url": "/x", "containerImage": "i", "container_environment": {"A": "1"}, "tags": None}
    ) == {"inferenceUrl": "/x", "containerImage": "i", "containerEnvironment": [{"key": "A", "value": "1"}]}
    assert function_body({"secrets": {"S": "v"}}) == {"secrets": [{"name": "S", "value": "v"}]}
    assert parse_duration("30d") == timedelta(days=30) and parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(timedelta(hours=1)) == timedelta(hours=1)
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert structured_string('a"b\\c') == '"a\\"b\\\\c"'
