"""Defence in depth (issue 8 item 4): whatever path is stored, the worker calls its own function's
host and port, with an origin-form request target. A real raw server stands in for the function."""

from __future__ import annotations

import asyncio

import pytest
from test_http_pool import OK, RawServer, answering

from fnplane.compute.worker.health import HttpHealthCheck
from fnplane.shared.models.compute import HealthCheck
from fnplane.shared.models.functions import is_absolute_path, request_target

HOSTILE = ["@evil.example:9/x", "http://169.254.169.254/latest", "echo", "//evil.example/x", "/a b\r\nX: y"]


@pytest.mark.parametrize("uri", HOSTILE)
async def test_the_health_check_calls_the_instance_whatever_the_uri(uri: str) -> None:
    seen: list[bytes] = []
    async with RawServer(answering(OK, seen=seen)) as server:
        health = HealthCheck(
            protocol="HTTP", uri=uri, port=server.port, timeoutSeconds=5, expectedStatusCode=200
        )
        check = HttpHealthCheck("127.0.0.1", server.port, health)
        try:
            result = await asyncio.wait_for(check(), 10)
        finally:
            await check.aclose()
    assert result.ok, result.detail
    method, target, version = seen[0].split(b"\r\n", 1)[0].split(b" ")
    assert method == b"GET" and version == b"HTTP/1.1" and target.startswith(b"/")


async def test_a_health_check_nothing_answers_says_so_in_a_sentence() -> None:
    async with RawServer(answering(OK)) as server:
        port = server.port  # free once the server is gone: nothing listens there
    health = HealthCheck(protocol="HTTP", uri="/", port=port, timeoutSeconds=5, expectedStatusCode=200)
    check = HttpHealthCheck("127.0.0.1", port, health)
    try:
        result = await asyncio.wait_for(check(), 10)
    finally:
        await check.aclose()
    assert not result.ok
    assert result.detail == f"GET http://127.0.0.1:{port}/: connection refused: nothing listens on the port"


@pytest.mark.parametrize("path", HOSTILE)
def test_request_targets_are_origin_form(path: str) -> None:
    target = request_target(path)
    assert target.startswith("/") and not any(c in target for c in " \r\n\t")
    assert target.isascii()


def test_absolute_path_rule() -> None:
    assert (
        is_absolute_path("/echo") and is_absolute_path("/v1/chat/completions?x=1") and is_absolute_path("/")
    )
    for bad in [*HOSTILE, "", "/\\evil", "/x\x00", "/é\t"]:
        assert not is_absolute_path(bad), bad
