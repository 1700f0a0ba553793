"""The decisions behind asynchronous submission, idempotency keys and back-pressure, without NATS:
Prefer parsing, which requests are queued whole, the idempotency key's rules and fingerprint, the
Retry-After of a full queue from its drain rate, and the gateway's concurrency limit."""

from __future__ import annotations

import asyncio

import pytest

from fnplane.invocation import idempotency, submissions
from fnplane.invocation.backpressure import (
    ConcurrencyLimit,
    DrainMeter,
    QueueProgress,
    drain_rate,
    retry_after_s,
)
from fnplane.invocation.http import Request, error_answer
from fnplane.invocation.preferences import preferences, wants_async
from fnplane.shared import errors, wire


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs]


def request(method: str, *pairs: tuple[str, str]) -> Request:
    scope = {"type": "http", "method": method, "path": "/v2/nvcf/pexec/functions/x", "headers": raw(*pairs)}

    async def nothing() -> dict:
        return {}

    async def ignore(_: dict) -> None:
        return None

    return Request(scope, nothing, ignore)


# --- Prefer (RFC 7240) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("Prefer", "respond-async")],
        [("prefer", "Respond-Async")],
        [("Prefer", "wait=10, respond-async")],
        [("Prefer", "return=minimal"), ("Prefer", "respond-async; foo=bar")],
    ],
)
def test_respond_async_is_found_in_any_prefer_header(headers):
    assert wants_async(raw(*headers))


@pytest.mark.parametrize(
    "headers",
    [[], [("Prefer", "return=minimal")], [("Prefer", "respond-asynchronously")], [("X", "respond-async")]],
)
def test_other_or_no_preferences_leave_the_request_synchronous(headers):
    assert not wants_async(raw(*headers))


def test_the_first_occurrence_of_a_preference_wins_and_values_are_unquoted():
    assert preferences(raw(("Prefer", 'wait=5, wait=9, handling="lenient"'))) == {
        "wait": "5",
        "handling": "lenient",
    }


def test_which_requests_are_queued_whole():
    assert submissions.applies(request("POST", ("Prefer", "respond-async")))
    assert submissions.applies(request("POST", ("Idempotency-Key", '"k"')))
    assert not submissions.applies(request("POST"))
    # direct invocation: only a key, and only on the methods that are not idempotent already
    assert not submissions.applies(request("POST", ("Prefer", "respond-async")), direct=True)
    assert submissions.applies(request("PATCH", ("Idempotency-Key", '"k"')), direct=True)
    assert not submissions.applies(request("GET", ("Idempotency-Key", '"k"')), direct=True)


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_the_key_is_a_structured_string_or_a_bare_token():
    assert idempotency.parse_key({"idempotency-key": '"8e03978e-40d5-43e8"'}) == "8e03978e-40d5-43e8"
    assert idempotency.parse_key({"idempotency-key": "plain-token"}) == "plain-token"
    assert idempotency.parse_key({"idempotency-key": r'"a \"q\" b"'}) == 'a "q" b'
    assert idempotency.parse_key({}) is None


@pytest.mark.parametrize("value", ['""', "", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400_naming_the_header(value):
    with pytest.raises(errors.BadRequestError) as caught:
        idempotency.parse_key({"idempotency-key": value})
    assert caught.value.field == "Idempotency-Key"


def test_the_fingerprint_changes_with_method_target_and_body_only():
    base = idempotency.fingerprint("POST", "/v2/nvcf/pexec/functions/f", b'{"a":1}')
    assert base == idempotency.fingerprint("post", "/v2/nvcf/pexec/functions/f", b'{"a":1}')
    assert base != idempotency.fingerprint("PUT", "/v2/nvcf/pexec/functions/f", b'{"a":1}')
    assert base != idempotency.fingerprint("POST", "/v2/nvcf/exec/functions/f", b'{"a":1}')
    assert base != idempotency.fingerprint("POST", "/v2/nvcf/pexec/functions/f", b'{"a":2}')
    # the parts are length-prefixed: moving bytes from the target into the body is another request
    assert idempotency.fingerprint("POST", "/ab", b"c") != idempotency.fingerprint("POST", "/a", b"bc")


def test_keys_belong_to_an_account():
    assert idempotency.bucket_key("acct-a", "k") != idempotency.bucket_key("acct-b", "k")
    assert idempotency.bucket_key("acct-a", "k").startswith("acct-a.")
    # any header value becomes a valid bucket key (hashed)
    assert "." not in idempotency.bucket_key("a", "x.y z*>").split(".", 1)[1]


def test_the_same_key_with_another_request_is_422_naming_the_header():
    record = wire.IdempotencyRecord("fp1", "rid", "fid", "vid", "nca")
    idempotency.check_same(record, "fp1")
    with pytest.raises(errors.UnprocessableError) as caught:
        idempotency.check_same(record, "fp2")
    status, headers, body = error_answer(caught.value, "/v2/nvcf/pexec/functions/f", invocation=True)
    assert status == 422 and b'"field": "Idempotency-Key"' in body
    assert (b"content-type", b"application/problem+json") in headers


# --- back-pressure ----------------------------------------------------------------------------------


def test_retry_after_is_the_time_to_drain_one_request_between_one_second_and_the_cap():
    assert retry_after_s(0.5, 60) == 2
    assert retry_after_s(0.3, 60) == 4  # ceil(3.33)
    assert retry_after_s(200.0, 60) == 1  # never 0
    assert retry_after_s(0.001, 60) == 60  # capped
    assert retry_after_s(0.0, 60) == 60  # nothing drains


def test_drain_rate_prefers_recent_samples_and_falls_back_to_the_lifetime_rate():
    lifetime = QueueProgress(pending=10, finished=100, age_s=200.0)
    assert drain_rate([(0.0, 50), (2.0, 54)], lifetime) == 2.0
    # too short a span, or no progress in it: the consumer's lifetime average
    assert drain_rate([(0.0, 50), (0.5, 54)], lifetime) == 0.5
    assert drain_rate([(0.0, 50), (5.0, 50)], lifetime) == 0.5
    assert drain_rate([], QueueProgress(pending=3, finished=0, age_s=10.0)) == 0.0


async def test_the_drain_meter_probes_at_most_twice_a_second_and_measures_between_probes():
    now = [0.0]
    finished = {0.0: 10, 0.2: 11, 2.0: 14}
    probes = []

    async def probe(version_id: str) -> QueueProgress | None:
        probes.append(version_id)
        return QueueProgress(pending=5, finished=finished[now[0]], age_s=100.0 + now[0])

    meter = DrainMeter(probe, max_retry_after_s=60, clock=lambda: now[0])
    assert await meter.retry_after("v") == 10  # one look: the lifetime rate, 10 finished in 100 s
    now[0] = 0.2
    assert await meter.retry_after("v") == 10 and len(probes) == 1  # reused within the interval
    now[0] = 2.0
    assert await meter.retry_after("v") == 1  # 4 finished in the last 2 s: 2 per second
    assert len(probes) == 2


async def test_the_drain_meter_answers_the_cap_when_the_queue_cannot_be_looked_at():
    async def probe(version_id: str) -> QueueProgress | None:
        return None

    assert await DrainMeter(probe, max_retry_after_s=30).retry_after("v") == 30


def test_the_concurrency_limit_answers_503_with_retry_after_and_frees_on_exit():
    limit = ConcurrencyLimit(2, retry_after_s=3)
    with limit.hold(), limit.hold():
        with pytest.raises(errors.UnavailableError) as caught, limit.hold():
            pass
        assert limit.in_flight == 2
    assert limit.in_flight == 0
    status, headers, _ = error_answer(caught.value, "/v2/nvcf/pexec/functions/f", invocation=True)
    assert status == 503 and (b"retry-after", b"3") in headers
    with ConcurrencyLimit(0, 1).hold():  # 0: no limit
        pass


def test_a_failing_invocation_still_frees_its_slot():
    limit = ConcurrencyLimit(1, retry_after_s=1)
    with pytest.raises(RuntimeError), limit.hold():
        raise RuntimeError("boom")
    with limit.hold():
        assert limit.in_flight == 1


def test_the_meter_keeps_one_lock_per_version():
    async def run() -> None:
        calls = 0

        async def probe(version_id: str) -> QueueProgress:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            return QueueProgress(1, 1, 1.0)

        meter = DrainMeter(probe, 60)
        await asyncio.gather(*(meter.retry_after("v") for _ in range(5)))
        assert calls == 1  # concurrent 429s of one version share one probe

    asyncio.run(run())
