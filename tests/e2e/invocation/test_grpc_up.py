"""gRPC invocation through a real `fnplane up`: the proxy on --grpc-port relays calls of any service
over sessions on the bus to real gRPC function processes (tests/e2e/grpc_function.py, Triton's
protocol in tests/e2e/triton_function.py).

One platform serves the module (sessions idle out after 2 s here, so a test can see one end); tests
that kill, limit or reconfigure get a function (or a platform) of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from up_process import (
    REPO,
    UpProcess,
    deploy_function,
    free_port,
    function_processes,
    grpc_function_body,
    new_api_key,
    self_signed_certificate,
)

FN = REPO / "tests" / "e2e" / "grpc_function.py"
TRITON = REPO / "tests" / "e2e" / "triton_function.py"
SESSION_IDLE_S = 2.0
CALL_TIMEOUT_S = 30.0

pytestmark = pytest.mark.xdist_group("grpc-up")


@dataclass
class Platform:
    up: UpProcess
    key: str
    fn: dict
    markers: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def metadata(self, fn: dict | None = None, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        fn = fn or self.fn
        return (("authorization", f"Bearer {self.key}"), ("function-id", fn["id"]), *extra)

    def channel(self) -> grpc.Channel:
        """A channel of its own connection (grpcio shares one connection between the channels of a
        process to the same target unless told not to): its own session."""
        return grpc.insecure_channel(self.up.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)])


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("grpc")
    markers = tmp / "markers"
    markers.mkdir()
    key = "nvapi-" + secrets.token_urlsafe(32)
    env = {"FNPLANE_ADMIN_KEY": key, "FNPLANE_GRPC_SESSION_IDLE_S": str(SESSION_IDLE_S)}
    up = UpProcess(tmp / "home", env=env)
    try:
        up.wait_healthy()
        auth = {"Authorization": f"Bearer {key}"}
        body = grpc_function_body("grpc-e2e", FN, {"GRPC_TEST_MARKER_DIR": str(markers)})
        fn = deploy_function(up, auth, body, max_concurrency=8)
        yield Platform(up, key, fn, markers)
    finally:
        up.kill_leftovers()


def unary(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(f"/fnplane.test.Fn/{method}")


def test_unary_call_relays_metadata_headers_and_trailers(platform: Platform) -> None:
    with platform.channel() as channel:
        reply, call = unary(channel, "Echo").with_call(
            b"hello", metadata=platform.metadata(None, ("x-color", "blue")), timeout=CALL_TIMEOUT_S
        )
        assert reply == b"hello"
        initial = dict(call.initial_metadata())
        assert initial["x-echo-color"] == "blue"
        assert initial["nvcf-reqid"]
        assert dict(call.trailing_metadata())["x-trailer"] == "unary"

        seen_raw, call = unary(channel, "Metadata").with_call(
            b"", metadata=platform.metadata(None, ("x-tag", "t1"), ("x-raw-bin", b"\x00\xff")), timeout=10
        )
        seen = json.loads(seen_raw)
        assert "authorization" not in seen
        assert seen["x-tag"] == ["t1"] and seen["x-raw-bin"] == ["AP8="]
        # the session's request id, as the platform's other headers tell the function
        assert seen["nvcf-reqid"] == [dict(call.initial_metadata())["nvcf-reqid"]] == [initial["nvcf-reqid"]]
        assert seen["nvcf-function-id"] == [platform.fn["id"]]
        assert seen["nvcf-function-version-id"] == [platform.fn["versionId"]]


def test_every_call_shape(platform: Platform) -> None:
    md = platform.metadata()
    with platform.channel() as channel:
        count = channel.unary_stream("/fnplane.test.Fn/Count")
        assert list(count(b"5", metadata=md, timeout=CALL_TIMEOUT_S)) == [b"0", b"1", b"2", b"3", b"4"]
        total = channel.stream_unary("/fnplane.test.Fn/Sum")
        assert total(iter([b"1", b"2", b"39"]), metadata=md, timeout=CALL_TIMEOUT_S) == b"42"
        # bidirectional: each answer comes back before the next request is sent
        chat = channel.stream_stream("/fnplane.test.Fn/Chat")
        outbox: list[bytes] = []
        ready = threading.Event()

        def requests() -> Iterator[bytes]:
            for word in (b"one", b"two", b"three"):
                ready.clear()
                outbox.append(word)
                yield word
                assert ready.wait(10), "no answer before the next request"

        replies = []
        for reply in chat(requests(), metadata=md, timeout=CALL_TIMEOUT_S):
            replies.append(reply)
            ready.set()
        assert replies == [b"ONE", b"TWO", b"THREE"]


def test_function_status_details_and_trailers_pass_through(platform: Platform) -> None:
    with platform.channel() as channel:
        with pytest.raises(grpc.RpcError) as failed:
            unary(channel, "Fail")(
                b"", metadata=platform.metadata(None, ("x-code", "9"), ("x-details", "not now")), timeout=10
            )
    error = failed.value
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert error.details() == "not now"  # type: ignore[attr-defined]
    trailers = dict(error.trailing_metadata())  # type: ignore[attr-defined]
    assert trailers["x-why"] == "failing" and trailers["x-blob-bin"] == b"\x00\x01\x02"


def test_a_large_message_both_ways(platform: Platform) -> None:
    with platform.channel() as channel:
        assert unary(channel, "Big")(b"2097152", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S) == (
            b"x" * 2 * 1024 * 1024
        )
        echo = unary(channel, "Echo")
        big = os.urandom(3 * 1024 * 1024)
        assert echo(big, metadata=platform.metadata(), timeout=CALL_TIMEOUT_S) == big
        # over the 4 MiB limit, either way: RESOURCE_EXHAUSTED, and the session goes on
        for method, request in (("Echo", b"y" * (5 * 1024 * 1024)), ("Big", b"5242880")):
            with pytest.raises(grpc.RpcError) as too_big:
                unary(channel, method)(request, metadata=platform.metadata(), timeout=CALL_TIMEOUT_S)
            assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert echo(b"after", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S) == b"after"


def test_the_deadline_reaches_the_function_and_expires(platform: Platform) -> None:
    with platform.channel() as channel:
        sleep = unary(channel, "Sleep")
        left = float(sleep(b"0.1", metadata=platform.metadata(), timeout=8.0))
        assert 4.0 < left < 8.0  # the function saw the client's deadline, less the time spent on the way
        with pytest.raises(grpc.RpcError) as expired:
            sleep(b"5", metadata=platform.metadata(), timeout=1.0)
        assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]


def _cancelled(platform: Platform, tag: str, timeout_s: float = 10.0) -> bool:
    marker = platform.markers / "cancelled"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists() and f"cancelled {tag}" in marker.read_text().splitlines():
            return True
        time.sleep(0.05)
    return False


def test_a_client_cancel_reaches_the_function(platform: Platform) -> None:
    with platform.channel() as channel:
        # the session is open (a call went through) before the call to cancel
        unary(channel, "Echo")(b"", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S)
        future = unary(channel, "Hang").future(b"", metadata=platform.metadata(None, ("x-tag", "unary")))
        time.sleep(0.5)
        future.cancel()
        assert _cancelled(platform, "unary")

        stream = channel.unary_stream("/fnplane.test.Fn/HangStream")(
            b"", metadata=platform.metadata(None, ("x-tag", "stream")), timeout=CALL_TIMEOUT_S
        )
        assert next(stream) == b"started"
        stream.cancel()
        assert _cancelled(platform, "stream")

        # and a deadline that passes does too
        with pytest.raises(grpc.RpcError):
            unary(channel, "Hang")(b"", metadata=platform.metadata(None, ("x-tag", "deadline")), timeout=1)
        assert _cancelled(platform, "deadline")


def test_one_session_per_connection_reused_then_idled_out(platform: Platform) -> None:
    echo_ids = []
    with platform.channel() as channel:
        whoami = unary(channel, "Echo")
        for i in range(50):
            reply, call = whoami.with_call(str(i).encode(), metadata=platform.metadata(), timeout=10)
            assert reply == str(i).encode()
            echo_ids.append(dict(call.initial_metadata())["nvcf-reqid"])
        assert len(set(echo_ids)) == 1, "50 calls on one channel are one session"
        with platform.channel() as other:
            _, call = unary(other, "Echo").with_call(b"", metadata=platform.metadata(), timeout=10)
            assert dict(call.initial_metadata())["nvcf-reqid"] != echo_ids[0], "another connection"
        time.sleep(SESSION_IDLE_S + 3)
        _, call = whoami.with_call(b"", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S)
        assert dict(call.initial_metadata())["nvcf-reqid"] != echo_ids[0], "the idle session ended"


def test_an_idle_connection_with_keepalive_pings_stays_usable(platform: Platform) -> None:
    options = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 2000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(platform.up.grpc_target, options=options) as channel:
        echo = unary(channel, "Echo")
        assert echo(b"a", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S) == b"a"
        time.sleep(6)  # several client PINGs on an idle connection: the proxy answers, never GOAWAYs
        assert channel._channel.check_connectivity_state(False) == 2  # type: ignore[attr-defined]  # READY
        assert echo(b"b", metadata=platform.metadata(), timeout=CALL_TIMEOUT_S) == b"b"


def _key_with(platform: Platform, scopes: list[str]) -> str:
    return new_api_key(platform.up, platform.auth, scopes)[1]


def _code(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        unary(channel, "Echo")(b"", metadata=metadata, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def test_errors_map_to_grpc_status_codes(platform: Platform) -> None:
    fid = platform.fn["id"]
    bearer = ("authorization", f"Bearer {platform.key}")
    listing = _key_with(platform, ["list_functions"])
    with platform.channel() as channel:
        assert _code(channel, (("function-id", fid),)) is grpc.StatusCode.UNAUTHENTICATED
        assert _code(channel, (("authorization", "Basic abc"), ("function-id", fid))) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
        unknown_key = ("authorization", "Bearer nvapi-" + "x" * 43)
        assert _code(channel, (unknown_key, ("function-id", fid))) is grpc.StatusCode.UNAUTHENTICATED
        assert _code(channel, (bearer,)) is grpc.StatusCode.INVALID_ARGUMENT
        assert _code(channel, (bearer, ("function-id", "not-a-uuid"))) is grpc.StatusCode.INVALID_ARGUMENT
        unknown = "6d2f3b1c-0000-4000-8000-000000000000"
        assert _code(channel, (bearer, ("function-id", unknown))) is grpc.StatusCode.NOT_FOUND
        no_scope = (("authorization", f"Bearer {listing}"), ("function-id", fid))
        assert _code(channel, no_scope) is grpc.StatusCode.PERMISSION_DENIED
        pinned = platform.metadata(None, ("function-version-id", platform.fn["versionId"]))
        assert _code(channel, pinned) is grpc.StatusCode.OK
        other_version = platform.metadata(None, ("function-version-id", unknown))
        assert _code(channel, other_version) is grpc.StatusCode.NOT_FOUND


def test_rate_limited_sessions_are_resource_exhausted(platform: Platform) -> None:
    body = grpc_function_body("grpc-rate", FN)
    body["rateLimit"] = {"rateLimit": "1-M"}
    fn = deploy_function(platform.up, platform.auth, body, max_concurrency=4)
    with platform.channel() as first, platform.channel() as second:
        assert _code(first, platform.metadata(fn)) is grpc.StatusCode.OK
        # the session is admitted once: later calls on it are not counted again
        assert _code(first, platform.metadata(fn)) is grpc.StatusCode.OK
        assert _code(second, platform.metadata(fn)) is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_sessions_count_against_max_request_concurrency(platform: Platform) -> None:
    fn = deploy_function(platform.up, platform.auth, grpc_function_body("grpc-one", FN), max_concurrency=1)
    first = platform.channel()
    try:
        assert _code(first, platform.metadata(fn)) is grpc.StatusCode.OK  # holds the only slot
        with platform.channel() as second:
            waiting = unary(second, "Whoami").future(b"", metadata=platform.metadata(fn), timeout=25)
            time.sleep(2.0)
            assert not waiting.done(), "a second session waits for the slot the first holds"
            first.close()  # the first connection ends: its session, and so its slot, is freed
            assert waiting.result(timeout=20)
    finally:
        first.close()


def test_a_session_waiting_for_a_worker_when_its_version_is_undeployed_is_not_found(
    platform: Platform,
) -> None:
    fn = deploy_function(platform.up, platform.auth, grpc_function_body("grpc-gone", FN), max_concurrency=1)
    first = platform.channel()
    try:
        assert _code(first, platform.metadata(fn)) is grpc.StatusCode.OK  # holds the only slot
        with platform.channel() as second:
            waiting = unary(second, "Whoami").future(b"", metadata=platform.metadata(fn), timeout=25)
            time.sleep(1.0)
            assert not waiting.done(), "a second session waits for the slot the first holds"
            undeployed = httpx.delete(
                f"{platform.up.url}/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
                headers=platform.auth,
            )
            assert undeployed.status_code == 200, undeployed.text
            with pytest.raises(grpc.RpcError) as gone:
                waiting.result(timeout=10)  # not the 25 s deadline, nor the 30 s wait for a worker
            assert gone.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            assert "undeployed" in gone.value.details()  # type: ignore[attr-defined]
    finally:
        first.close()


def test_an_instance_killed_mid_stream_gives_unavailable(platform: Platform) -> None:
    fn = deploy_function(platform.up, platform.auth, grpc_function_body("grpc-kill", FN), max_concurrency=2)
    with platform.channel() as channel:
        stream = channel.unary_stream("/fnplane.test.Fn/Count")(
            b"1000", metadata=platform.metadata(fn, ("x-delay", "0.05")), timeout=CALL_TIMEOUT_S
        )
        assert next(stream) == b"0"
        processes = function_processes(fn["id"])
        assert processes
        for process in processes:
            os.kill(process.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as broken:
            for _ in stream:
                pass
        assert broken.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert time.monotonic() - started < 15


def test_tritonclient_model_infer_through_the_proxy(platform: Platform) -> None:
    import tritonclient.grpc as triton

    fn = deploy_function(platform.up, platform.auth, grpc_function_body("triton", TRITON), max_concurrency=4)
    headers = {"authorization": f"Bearer {platform.key}", "function-id": fn["id"]}
    client = triton.InferenceServerClient(url=platform.up.grpc_target)
    try:
        data = np.arange(16, dtype=np.float32)
        inputs = [triton.InferInput("INPUT0", list(data.shape), "FP32")]
        inputs[0].set_data_from_numpy(data)
        outputs = [triton.InferRequestedOutput("OUTPUT0")]
        result = client.infer("identity_fp32", inputs, outputs=outputs, headers=headers, client_timeout=30)
        assert np.array_equal(result.as_numpy("OUTPUT0"), data)
        assert client.is_model_ready("identity_fp32", headers=headers)
    finally:
        client.close()


def test_concurrent_calls_on_one_session_are_multiplexed(platform: Platform) -> None:
    async def run() -> list[bytes]:
        async with grpc.aio.insecure_channel(platform.up.grpc_target) as channel:
            sleep = channel.unary_unary("/fnplane.test.Fn/Sleep")
            md = platform.metadata()
            await channel.unary_unary("/fnplane.test.Fn/Echo")(b"", metadata=md, timeout=CALL_TIMEOUT_S)
            started = time.monotonic()
            replies = await asyncio.gather(*(sleep(b"1.0", metadata=md, timeout=20) for _ in range(4)))
            assert time.monotonic() - started < 3.5, "four 1 s calls on one session ran at once"
            return list(replies)

    assert len(asyncio.run(run())) == 4


def test_the_proxy_as_its_own_process_shares_only_the_bus(platform: Platform, tmp_path: Path) -> None:
    """`fnplane grpc-proxy` beside the platform: its own NATS credential, the control URL, no address
    of any worker; the worker answers over the bus without any address of the proxy."""
    from fnplane.bus.credentials import UserCredential
    from fnplane.up.bus_auth import BusCredentials, operator_keys

    home = platform.up.home
    nats_url = next(
        line.split("NATS at ", 1)[1].split(",", 1)[0]
        for line in platform.up.stdout.splitlines()
        if "NATS at " in line
    )
    credential = BusCredentials.for_embedded(operator_keys(home)).gateway()
    assert isinstance(credential, UserCredential)
    creds = tmp_path / "proxy.creds"
    creds.write_text(credential.creds_file())
    creds.chmod(0o600)
    port = free_port()
    proxy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "fnplane"), "grpc-proxy",
            "--nats-url", nats_url, "--nats-creds", str(creds), "--control-url", platform.up.url,
            "--grpc-port", str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline().decode()
        assert "grpc-proxy is up" in line, proxy.stderr.read().decode() if proxy.stderr else line
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply, call = unary(channel, "Echo").with_call(b"far", metadata=platform.metadata(), timeout=30)
            assert reply == b"far" and dict(call.initial_metadata())["nvcf-reqid"]
            assert _code(channel, (("function-id", platform.fn["id"]),)) is grpc.StatusCode.UNAUTHENTICATED
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(20) == 0
    finally:
        if proxy.poll() is None:
            os.killpg(proxy.pid, signal.SIGKILL)
            proxy.wait(10)


def test_a_scaled_to_zero_version_is_woken(platform: Platform) -> None:
    body = grpc_function_body("grpc-zero", FN)
    fn = deploy_function(platform.up, platform.auth, body, max_concurrency=2, min_instances=0)
    assert not function_processes(fn["id"])
    with platform.channel() as channel:
        assert unary(channel, "Echo")(b"up", metadata=platform.metadata(fn), timeout=60) == b"up"
    assert function_processes(fn["id"])


def test_tls_and_no_worker_in_time_is_deadline_exceeded(tmp_path: Path) -> None:
    """gRPC over TLS (h2 by ALPN) with --tls-cert/--tls-key; a session no worker takes within the attach
    window fails DEADLINE_EXCEEDED, and its queued request is gone (the next session is served at once)."""
    cert, key_file = self_signed_certificate(tmp_path)
    key = "nvapi-" + secrets.token_urlsafe(32)
    env = {"FNPLANE_ADMIN_KEY": key, "FNPLANE_GRPC_ATTACH_TIMEOUT_S": "3"}
    up = UpProcess(tmp_path / "home", env=env, args=["--tls-cert", str(cert), "--tls-key", str(key_file)])
    try:
        up.wait_healthy()
        auth = {"Authorization": f"Bearer {key}"}
        fn = deploy_function(up, auth, grpc_function_body("grpc-tls", FN), max_concurrency=1)
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        options = [("grpc.ssl_target_name_override", "fnplane.test"), ("grpc.use_local_subchannel_pool", 1)]
        md = (("authorization", f"Bearer {key}"), ("function-id", fn["id"]))
        first = grpc.secure_channel(up.grpc_target, credentials, options=options)
        try:
            assert unary(first, "Echo")(b"tls", metadata=md, timeout=CALL_TIMEOUT_S) == b"tls"
            with grpc.secure_channel(up.grpc_target, credentials, options=options) as second:
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as late:
                    unary(second, "Echo")(b"", metadata=md, timeout=CALL_TIMEOUT_S)
                assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
                assert "failed to establish link to worker" in late.value.details()  # type: ignore[attr-defined]
                assert 2.5 < time.monotonic() - started < 10
                first.close()  # the slot is free: the abandoned session must not take it
                time.sleep(1.0)
                with grpc.secure_channel(up.grpc_target, credentials, options=options) as third:
                    assert unary(third, "Echo")(b"again", metadata=md, timeout=2.5) == b"again"
        finally:
            first.close()
    finally:
        up.kill_leftovers()


def test_a_revoked_key_ends_its_sessions_at_once(platform: Platform) -> None:
    key_id, key = new_api_key(platform.up, platform.auth, ["invoke_function"])
    md = (("authorization", f"Bearer {key}"), ("function-id", platform.fn["id"]), ("x-tag", "revoked"))
    with platform.channel() as channel:
        assert unary(channel, "Echo")(b"", metadata=md, timeout=CALL_TIMEOUT_S) == b""
        hanging = unary(channel, "Hang").future(b"", metadata=md, timeout=CALL_TIMEOUT_S)
        time.sleep(0.5)
        r = httpx.delete(f"{platform.up.url}/v1/keys/{key_id}", headers=platform.auth)
        assert r.status_code in (200, 204), r.text
        with pytest.raises(grpc.RpcError) as ended:
            hanging.result(timeout=10)
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert _cancelled(platform, "revoked"), "the function's call was cancelled too"
        assert _code(channel, md) is grpc.StatusCode.UNAUTHENTICATED


def test_a_grpc_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = UpProcess(tmp_path / "home", args=["--grpc-port", str(port)])
        try:
            assert up.process.wait(60) == 1
            assert f"cannot serve gRPC on 127.0.0.1:{port}" in up.stderr and "--grpc-port" in up.stderr
        finally:
            up.kill_leftovers()
