"""The SDK's invocation against a real `fnplane up` and examples/inv_function.py: pexec's 202 -> poll ->
200 at NVCF's poll rate, a 302 download, SSE events one by one, submit / status / cancel, idempotency
keys, direct invocation, and errors carrying their request id."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from sdk_platform import Platform, platform, start_platform  # noqa: F401
from tcp_proxy import TcpProxy

from fnplane.sdk import (
    ApiError,
    AsyncClient,
    Client,
    GatewayTimeoutError,
    GoneError,
    NotAnEventStreamError,
    NotFoundError,
    UnavailableError,
)

STATUS_GET = b"GET /v2/nvcf/pexec/status/"


def pattern(size: int) -> bytes:
    """inv_function.py's deterministic large body."""
    block = bytes(range(256)) * 256
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


async def test_a_202_is_polled_with_long_polls_at_most_once_a_second(platform: Platform) -> None:  # noqa: F811
    """A 3 s function with poll_seconds=1: the POST answers 202 after ~1 s, then each status GET
    long-polls (NVCF-POLL-SECONDS); the proxy (HTTP/1.1, so it can count) sees <= 1 poll per second."""
    fid = platform.function("/slow")["id"]
    with TcpProxy(platform.up.port, record=True) as proxy:
        async with AsyncClient(proxy.url, platform.key, http2=False) as client:
            started = time.monotonic()
            result = await client.invoke_response(fid, {"seconds": 3}, poll_seconds=1)
            elapsed = time.monotonic() - started
        polls = proxy.count(STATUS_GET)
        assert result.status_code == 200 and result.value["slept"] == 3
        assert result.request_id and result.headers["nvcf-status"] == "fulfilled"
        assert 1 <= polls <= elapsed + 1, (polls, elapsed)
        assert proxy.count(b"nvcf-poll-seconds: 1\r\n") == polls + 1  # the POST and every poll


async def test_progress_answers_do_not_make_polls_faster(platform: Platform) -> None:  # noqa: F811
    """A function that reports progress 4 times in 2 s makes the platform answer each poll at once
    (202 with NVCF-PERCENT-COMPLETE): the SDK still waits a second between polls."""
    fid = platform.function("/progress")["id"]
    with TcpProxy(platform.up.port, record=True) as proxy:
        async with AsyncClient(proxy.url, platform.key, http2=False) as client:
            started = time.monotonic()
            answer = await client.invoke(fid, {"steps": 4, "interval": 0.5}, poll_seconds=10)
            elapsed = time.monotonic() - started
        polls = proxy.count(STATUS_GET)
        assert answer == {"done": True, "steps": 4}
        assert 1 <= polls <= elapsed + 1, (polls, elapsed)


async def test_status_shows_progress_and_the_result(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/progress")["id"]
    async with AsyncClient(platform.up.url, platform.key) as client:
        request_id = await client.submit(fid, {"steps": 3, "interval": 0.7})
        seen = []
        while not (status := await client.status(request_id, poll_seconds=2)).done:
            assert status.status in ("pending-evaluation", "in-progress")
            seen.append(status.percent_complete)
        assert status.status == "fulfilled" and status.result is not None
        assert status.result.json() == {"done": True, "steps": 3}
        assert [p for p in seen if p is not None], seen


async def test_a_large_result_follows_the_302(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/large")["id"]
    size = 6 * 1024 * 1024
    async with AsyncClient(platform.up.url, platform.key) as client:
        response = await client._conn.send("POST", f"/v2/nvcf/pexec/functions/{fid}", json={"bytes": size})
        assert response.status_code == 302 and response.headers["location"]
        result = await client.invoke_response(fid, {"bytes": size})
    assert result.status_code == 200 and result.headers["content-type"] == "application/zip"
    # NVCF's large result: a zip of the response (and of any files the function left in its output dir)
    with zipfile.ZipFile(io.BytesIO(result.value)) as archive:
        assert pattern(size) in [archive.read(name) for name in archive.namelist()]


async def test_pexec_sse_events_arrive_one_by_one(platform: Platform) -> None:  # noqa: F811
    """Each event is in the caller's hands before the function even writes the next one."""
    fid = platform.function("/sse")["id"]
    arrived: list[float] = []
    written: list[float] = []
    async with AsyncClient(platform.up.url, platform.key) as client:
        async for event in client.stream(fid, {"events": 4, "interval": 0.5}):
            arrived.append(time.time())
            written.append(event.json()["t"])  # type: ignore[index]
            assert event.event == "message" and event.id == str(len(arrived) - 1)
    assert len(arrived) == 4
    assert all(arrived[i] < written[i + 1] for i in range(3)), (arrived, written)


async def test_concurrent_streams_on_one_http2_connection_are_not_held_back(platform: Platform) -> None:  # noqa: F811
    """Three SSE streams at once on the client's one HTTP/2 connection, with events every 2, 1 and
    0.5 s: each event is handed over as it arrives. With httpcore's own reads a stream whose event
    another request had read stayed queued behind a request that went on to read the socket, and got
    it with the next frame: 0.5 s late, after events the function wrote later (order, not a deadline)."""
    fid = platform.function("/sse", max_concurrency=8)["id"]
    written: list[float] = []  # the function's write times, in the order the events arrived
    async with AsyncClient(platform.up.url, platform.key) as client:

        async def one(interval: float) -> None:
            body = {"events": round(4 / interval) + 1, "interval": interval}
            async for event in client.stream(fid, body):
                written.append(event.json()["t"])  # type: ignore[index]

        await asyncio.gather(*(one(interval) for interval in (2.0, 1.0, 0.5)))
    # an event that arrived after one written more than half the shortest interval later was held
    lags = [max(written[:i]) - t for i, t in enumerate(written) if i]
    held = [round(lag, 2) for lag in lags if lag > 0.25]
    assert len(written) == 3 + 5 + 9 and not held, held


async def test_concurrent_invocations_on_one_http2_connection_finish_in_order(platform: Platform) -> None:  # noqa: F811
    """Six calls at once on one HTTP/2 connection, taking 0.5 to 3 s: each answer is handed over as it
    arrives, so they finish shortest first (httpcore's own reads held some until a longer one answered)."""
    fid = platform.function("/sse", max_concurrency=8)["id"]
    durations = [2.0, 1.5, 0.5, 1.0, 2.5, 3.0]
    finished: list[float] = []
    async with AsyncClient(platform.up.url, platform.key) as client:
        await client.invoke_direct(fid, "/slow", params={"seconds": 0})  # the connection is open

        async def one(seconds: float) -> None:
            await client.invoke_direct(fid, "/slow", params={"seconds": seconds})
            finished.append(seconds)

        await asyncio.gather(*(one(seconds) for seconds in durations))
    assert finished == sorted(durations)


def test_blocking_stream_of_a_direct_path(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    with Client(platform.up.url, platform.key) as client:
        events = list(client.stream(fid, path="/sse?events=3&interval=0.1", method="GET"))
    assert [e.json()["n"] for e in events] == [0, 1, 2]  # type: ignore[index]


def test_a_stream_answered_without_events_raises_with_the_answer(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    with Client(platform.up.url, platform.key) as client:
        with pytest.raises(NotAnEventStreamError) as answered:
            list(client.stream(fid, {"hello": 1}, path="/echo"))
        assert answered.value.status == 200 and answered.value.request_id
        assert b"hello" in answered.value.content
        # events sent with another content type still count
        events = list(client.stream(fid, path="/sse?events=2&interval=0&type=text/plain", method="GET"))
    assert [e.json()["n"] for e in events] == [0, 1]  # type: ignore[index]


async def test_submit_status_cancel_and_result(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    marker = platform.shared_dir / f"started-{uuid.uuid4()}"
    async with AsyncClient(platform.up.url, platform.key) as client:
        quick = await client.submit(fid, {"seconds": 0.5})
        assert (await client.result(quick, timeout_s=30))["slept"] == 0.5
        with pytest.raises(NotFoundError):  # delivered, so forgotten (NVCF's tracking record too)
            await client.status(quick)

        slow = await client.submit(fid, {"seconds": 60, "marker": str(marker)})
        position = await client.queue_position(slow)
        assert position["functionId"] == fid and position["positionInQueue"] >= 0
        status = await client.status(slow)
        assert status.status in ("pending-evaluation", "in-progress") and status.result is None
        await client.cancel(slow)
        assert (await client.status(slow)).status == "rejected"
        with pytest.raises(GoneError) as gone:
            await client.result(slow, timeout_s=10)
        assert gone.value.status == 410  # type: ignore[attr-defined]
        with pytest.raises(NotFoundError):  # delivered and forgotten: nothing to cancel
            await client.cancel(quick)
        with pytest.raises(NotFoundError):
            await client.status(str(uuid.uuid4()))


async def test_invoke_past_its_timeout(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    async with AsyncClient(platform.up.url, platform.key) as client:
        with pytest.raises(GatewayTimeoutError) as late:
            await client.invoke(fid, {"seconds": 10}, poll_seconds=1, timeout_s=2)
    assert late.value.request_id  # type: ignore[attr-defined]


async def test_an_idempotency_key_runs_the_function_once(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    log = platform.shared_dir / f"served-{uuid.uuid4()}"
    body = {"seconds": 0.2, "log": str(log)}
    key = f"sdk-{uuid.uuid4()}"
    async with AsyncClient(platform.up.url, platform.key) as client:
        first = await client.invoke_response(fid, body, idempotency_key=key)
        again = await client.invoke_response(fid, body, idempotency_key=key)
    assert first.json()["slept"] == again.json()["slept"] == 0.2
    assert first.request_id == again.request_id
    assert log.read_text().splitlines() == [first.request_id]


async def test_direct_invocation_with_any_method_path_and_version(platform: Platform) -> None:  # noqa: F811
    function = platform.function("/slow")
    fid, vid = function["id"], function["versionId"]
    async with AsyncClient(platform.up.url, platform.key) as client:
        response = await client.invoke_direct(
            fid, "/anything/here", method="PUT", version_id=vid, content=b"abc", params={"q": "1"}
        )
        assert response.status_code == 200
        seen = response.json()
        assert (seen["method"], seen["path"], seen["query"]) == ("PUT", "/anything/here", "q=1")
        assert seen["bodySha256"] == hashlib.sha256(b"abc").hexdigest()
        assert {k.lower(): v for k, v in seen["headers"].items()}["nvcf-function-version-id"] == vid
        # the function's own error status comes back as it is
        teapot = await client.invoke_direct(fid, "/status", json={"code": 418})
        assert teapot.status_code == 418 and teapot.json() == {"error": "function says 418"}


async def test_a_function_error_raises_with_its_request_id(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    async with AsyncClient(platform.up.url, platform.key) as client:
        with pytest.raises(ApiError) as failed:
            await client.invoke(fid, {"seconds": "not a number"})
        with pytest.raises(NotFoundError) as missing:
            await client.invoke(str(uuid.uuid4()), {})
    assert failed.value.status == 500 and failed.value.request_id  # type: ignore[attr-defined]
    assert missing.value.status == 404 and missing.value.problem["status"] == 404  # type: ignore[attr-defined]


async def test_retries_honour_retry_after_of_a_full_gateway(tmp_path: Path) -> None:
    """A 503 with Retry-After (the gateway at its concurrency limit of 1) is retried after the wait.

    HTTP/1.1 here: over HTTP/2 the gateway's early 503 (sent before it read the body) resets the
    stream, and httpcore then raises LocalProtocolError instead of returning the answer."""
    env = {"FNPLANE_GATEWAY_MAX_CONCURRENT_INVOCATIONS": "1", "FNPLANE_GATEWAY_OVERLOAD_RETRY_AFTER_S": "1"}
    for full in start_platform(tmp_path / "home", env):
        fid = full.function("/slow")["id"]
        async with AsyncClient(full.up.url, full.key, http2=False) as client:
            marker = full.shared_dir / "first-started"
            first = asyncio.create_task(client.invoke(fid, {"seconds": 2, "marker": str(marker)}))
            while not marker.exists():  # noqa: ASYNC110 (a file, no event to wait on)
                await asyncio.sleep(0.05)
            async with AsyncClient(full.up.url, full.key, retries=0, http2=False) as impatient:
                with pytest.raises(UnavailableError) as refused:
                    await impatient.invoke(fid, {"seconds": 0})
            assert refused.value.status == 503 and refused.value.retry_after == 1  # type: ignore[attr-defined]
            second = await client.invoke(fid, {"seconds": 0})
            assert second["slept"] == 0 and (await first)["slept"] == 2


async def test_a_keyed_invocation_cut_midway_is_retried_and_runs_once(platform: Platform) -> None:  # noqa: F811
    """The proxy cuts the first attempt after 1.5 s of silence; with an Idempotency-Key the SDK may
    send it again, the retry joins the first request's outcome, and the function runs once."""
    fid = platform.function("/slow")["id"]
    log = platform.shared_dir / f"served-{uuid.uuid4()}"
    with TcpProxy(platform.up.port, idle_cut_s=1.5) as proxy:
        async with AsyncClient(proxy.url, platform.key) as client:
            answer = await client.invoke(
                fid, {"seconds": 2.5, "log": str(log)}, poll_seconds=30, idempotency_key=str(uuid.uuid4())
            )
        assert answer["slept"] == 2.5
        assert proxy.cuts == 1 and proxy.connections == 2
        assert len(log.read_text().splitlines()) == 1

        async with AsyncClient(proxy.url, platform.key) as client:
            with pytest.raises(httpx.TransportError):  # without a key a POST is never sent twice
                await client.invoke(fid, {"seconds": 2.5, "log": str(log)}, poll_seconds=30)
        assert proxy.cuts == 2 and proxy.connections == 3


async def test_direct_invocation_pins_the_version(platform: Platform) -> None:  # noqa: F811
    """With two versions deployed, each call reaches the version it names (8 calls: chance would
    get them all right once in 256)."""
    first = platform.function("/slow")
    fid = first["id"]
    async with AsyncClient(platform.up.url, platform.key) as client:
        second = await client.create_version(
            fid,
            name=first["name"],
            inference_url="/slow",
            inference_port=8000,
            container_args=first["containerArgs"],
        )
        await client.deploy(fid, second["versionId"], gpu="L40S", instance_type="LOCAL.GPU.L40S_1x")
        await client.wait_until_active(fid, second["versionId"], 60)
        try:
            for vid in [first["versionId"], second["versionId"]] * 4:
                seen = (await client.invoke_direct(fid, "/inspect", method="GET", version_id=vid)).json()
                assert {k.lower(): v for k, v in seen["headers"].items()}["nvcf-function-version-id"] == vid
        finally:
            await client.undeploy(fid, second["versionId"])
