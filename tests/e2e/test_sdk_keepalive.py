"""THE keepalive test: an HTTP/2 (h2c) invocation that stays silent for ~5 s, through a proxy that cuts
connections idle for 1.5 s (an idle-timeout middlebox). With the PING transport (every 0.5 s) it
survives; without it the proxy cuts it. The margins are generous: 0.5 s PINGs against a 1.5 s cut."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from sdk_platform import Platform, platform, start_platform  # noqa: F401
from tcp_proxy import TcpProxy
from up_process import self_signed_certificate

from fnplane.sdk import AsyncClient, Client, Keepalive, keepalive_async_http_client, keepalive_http_client

IDLE_CUT_S = 1.5
SLEEP_S = 5
PINGS = Keepalive(interval_s=0.5, ack_timeout_s=1.0)


def pexec_url(proxy: TcpProxy, fid: str) -> str:
    return f"{proxy.url}/v2/nvcf/pexec/functions/{fid}"


async def test_async_client_with_pings_survives_the_idle_cut(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    with TcpProxy(platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        async with AsyncClient(proxy.url, platform.key, keepalive=PINGS, timeout_s=30) as client:
            # two streams of one connection (the second waits its turn at the function)
            answers = await asyncio.gather(
                client.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30),
                client.invoke(fid, {"seconds": 2}, poll_seconds=30),
            )
        assert sorted(a["slept"] for a in answers) == [2, SLEEP_S]
        assert proxy.cuts == 0 and proxy.connections == 1


async def test_async_client_without_pings_is_cut(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    with TcpProxy(platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        async with AsyncClient(proxy.url, platform.key, retries=0, timeout_s=30) as client:
            with pytest.raises(httpx.TransportError):
                await client.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30)
        assert proxy.cuts == 1


def test_blocking_client_with_pings_survives_the_idle_cut(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    with TcpProxy(platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        with Client(proxy.url, platform.key, keepalive=PINGS) as client:
            assert client.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30)["slept"] == SLEEP_S
        assert proxy.cuts == 0


def test_keepalive_http_client_is_a_plain_httpx_client_that_survives(platform: Platform) -> None:  # noqa: F811
    """What `openai.OpenAI(http_client=keepalive_http_client(...))` gets: a sync httpx.Client."""
    fid = platform.function("/slow")["id"]
    body = {"seconds": SLEEP_S}
    headers = {**platform.headers, "NVCF-POLL-SECONDS": "30"}
    with TcpProxy(platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        with keepalive_http_client(interval_s=0.5, ack_timeout_s=1.0, http1=False, timeout=30) as http:
            assert isinstance(http, httpx.Client)
            response = http.post(pexec_url(proxy, fid), json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.http_version == "HTTP/2"
        assert response.json()["slept"] == SLEEP_S
        assert proxy.cuts == 0

        with httpx.Client(http1=False, http2=True, timeout=30) as plain:
            with pytest.raises(httpx.TransportError):
                plain.post(pexec_url(proxy, fid), json=body, headers=headers)
        assert proxy.cuts == 1


async def test_keepalive_async_http_client_survives(platform: Platform) -> None:  # noqa: F811
    fid = platform.function("/slow")["id"]
    headers = {**platform.headers, "NVCF-POLL-SECONDS": "30"}
    with TcpProxy(platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        async with keepalive_async_http_client(
            interval_s=0.5, ack_timeout_s=1.0, http1=False, timeout=30
        ) as http:
            response = await http.post(pexec_url(proxy, fid), json={"seconds": SLEEP_S}, headers=headers)
        assert response.status_code == 200 and response.json()["slept"] == SLEEP_S
        assert proxy.cuts == 0


async def test_a_connection_without_ping_acks_is_closed_with_a_clear_error(platform: Platform) -> None:  # noqa: F811
    """The path dies silently after 1 s (nothing reaches the client any more): the unanswered PING
    closes the connection and fails the waiting call, long before its 30 s read timeout."""
    fid = platform.function("/slow")["id"]
    with TcpProxy(platform.up.port, freeze_after_s=1.0) as proxy:
        async with AsyncClient(proxy.url, platform.key, keepalive=PINGS, retries=0, timeout_s=30) as client:
            with pytest.raises(httpx.ReadError, match="no HTTP/2 PING ACK"):
                await client.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30)


@pytest.fixture(scope="module")
def tls_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(tmp)
    yield from start_platform(tmp / "home", args=["--tls-cert", str(cert), "--tls-key", str(key)])


async def test_over_tls_http2_by_alpn_pings_keep_the_connection(tls_platform: Platform) -> None:
    fid = tls_platform.function("/slow")["id"]
    with TcpProxy(tls_platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        url = proxy.url.replace("http://", "https://")
        async with AsyncClient(url, tls_platform.key, keepalive=PINGS, verify=False) as client:
            assert (await client.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30))["slept"] == SLEEP_S
        assert proxy.cuts == 0
        async with AsyncClient(url, tls_platform.key, verify=False, retries=0) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.invoke(fid, {"seconds": SLEEP_S}, poll_seconds=30)
        assert proxy.cuts == 1


def test_over_tls_the_blocking_keepalive_client(tls_platform: Platform) -> None:
    fid = tls_platform.function("/slow")["id"]
    headers = {**tls_platform.headers, "NVCF-POLL-SECONDS": "30"}
    with TcpProxy(tls_platform.up.port, idle_cut_s=IDLE_CUT_S) as proxy:
        url = proxy.url.replace("http://", "https://") + f"/v2/nvcf/pexec/functions/{fid}"
        with keepalive_http_client(interval_s=0.5, ack_timeout_s=1.0, verify=False, timeout=30) as http:
            response = http.post(url, json={"seconds": SLEEP_S}, headers=headers)
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert proxy.cuts == 0
