"""The gRPC functions work when called directly, without the platform: examples/grpc_echo.py and its
client snippet, and the functions the platform tests use (tests/e2e/grpc_function.py and
tests/e2e/triton_function.py). Each runs as a real process on a free port, one per module.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 5.0
# reconnect quickly while the function is still starting (gRPC's default backoff starts at 1 s)
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 100)]


@dataclass
class Function:
    process: subprocess.Popen[bytes]
    port: int
    channel: grpc.Channel
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _health_statuses(channel: grpc.Channel) -> Generator[str, None, None]:
    """The function's health ("") as it changes, from its first answer; waits for it to listen."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=15, wait_for_ready=True
    )
    try:
        for response in watch:
            yield health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    finally:
        watch.cancel()


@contextmanager
def _running(module: str, log_dir: Path, **env: str) -> Iterator[Function]:
    """`python <module>` on a free PORT, in its own session; killed (with its group) on exit."""
    port = _free_port()
    log = log_dir / f"{Path(module).stem}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / module)],
            env={**os.environ, "PORT": str(port), "INFERENCE_PORT": str(port), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    try:
        yield Function(process, port, channel, log)
    finally:
        channel.close()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def _serving(module: str, log_dir: Path, **env: str) -> Iterator[Function]:
    with _running(module, log_dir, **env) as fn:
        try:
            next(s for s in _health_statuses(fn.channel) if s == "SERVING")
        except grpc.RpcError as error:
            pytest.fail(f"{module} never said SERVING ({error.code()}): {fn.log.read_text()}")
        yield fn


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def marker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def echo(log_dir: Path) -> Iterator[Function]:
    with _serving("examples/grpc_echo.py", log_dir) as fn:
        yield fn


@pytest.fixture(scope="module")
def fn(log_dir: Path, marker_dir: Path) -> Iterator[Function]:
    with _serving("tests/e2e/grpc_function.py", log_dir, GRPC_TEST_MARKER_DIR=str(marker_dir)) as fn:
        yield fn


@pytest.fixture(scope="module")
def triton_fn(log_dir: Path) -> Iterator[Function]:
    with _serving("tests/e2e/triton_function.py", log_dir) as fn:
        yield fn


def _requests_from(q: queue.Queue[bytes | None]) -> Iterator[bytes]:
    """Requests as the test puts them, so it can read a reply before sending the next request."""
    while (item := q.get(timeout=TIMEOUT_S)) is not None:
        yield item


def _wait_for_line(path: Path, line: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists() and line in path.read_text().splitlines():
            return
        time.sleep(0.02)
    pytest.fail(f"{line!r} not in {path}: {path.read_text() if path.exists() else '(no file)'}")


# examples/grpc_echo.py


def test_echo_unary_echoes_request_and_x_metadata(echo: Function) -> None:
    unary = echo.channel.unary_unary("/fnplane.examples.Echo/Unary")
    reply, call = unary.with_call(
        b"hello",
        metadata=(("x-tenant", "t1"), ("other", "no"), ("x-blob-bin", b"\x00\xff")),
        timeout=TIMEOUT_S,
    )
    assert reply == b"hello"
    initial = dict(call.initial_metadata())
    assert initial["x-echo-tenant"] == "t1"
    assert initial["x-echo-blob-bin"] == b"\x00\xff"
    assert "x-echo-other" not in initial
    assert ("x-trailer", "done") in call.trailing_metadata()


def test_echo_server_stream_replies_x_count_copies(echo: Function) -> None:
    stream = echo.channel.unary_stream("/fnplane.examples.Echo/ServerStream")
    assert list(stream(b"ab", timeout=TIMEOUT_S)) == [b"ab"] * 3
    call = stream(b"ab", metadata=(("x-count", "5"),), timeout=TIMEOUT_S)
    assert list(call) == [b"ab"] * 5
    assert dict(call.initial_metadata())["x-echo-count"] == "5"
    assert ("x-trailer", "done") in call.trailing_metadata()


def test_echo_client_stream_concatenates(echo: Function) -> None:
    client_stream = echo.channel.stream_unary("/fnplane.examples.Echo/ClientStream")
    reply, call = client_stream.with_call(iter([b"a", b"bc", b"", b"d"]), timeout=TIMEOUT_S)
    assert reply == b"abcd"
    assert ("x-trailer", "done") in call.trailing_metadata()


def test_echo_bidi_echoes_each_request_as_it_arrives(echo: Function) -> None:
    requests: queue.Queue[bytes | None] = queue.Queue()
    bidi = echo.channel.stream_stream("/fnplane.examples.Echo/Bidi")
    call = bidi(_requests_from(requests), metadata=(("x-k", "v"),), timeout=TIMEOUT_S)
    for message in (b"one", b"two"):
        requests.put(message)
        assert next(call) == message  # before the client has finished sending
    requests.put(None)
    assert list(call) == []
    assert dict(call.initial_metadata())["x-echo-k"] == "v"
    assert ("x-trailer", "done") in call.trailing_metadata()


def test_client_snippet_prints_the_reply(echo: Function) -> None:
    # straight at the function there is no platform to add nvcf-reqid: the snippet prints "-"
    env = {**os.environ, "FNPLANE_GRPC": echo.target, "FNPLANE_API_KEY": "nvapi-test", "FUNCTION_ID": "fid"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples/grpc_client.py")], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "hello over gRPC -\n"


# tests/e2e/grpc_function.py


def _unary(fn: Function, method: str) -> grpc.UnaryUnaryMultiCallable:
    return fn.channel.unary_unary(f"/fnplane.test.Fn/{method}")


def test_fn_echo(fn: Function) -> None:
    reply, call = _unary(fn, "Echo").with_call(b"hi", metadata=(("x-a", "1"), ("b", "2")), timeout=TIMEOUT_S)
    assert reply == b"hi"
    initial = dict(call.initial_metadata())
    assert initial["x-echo-a"] == "1"
    assert "x-echo-b" not in initial
    assert ("x-trailer", "unary") in call.trailing_metadata()


def test_fn_metadata_reports_what_it_received(fn: Function) -> None:
    metadata = (("authorization", "Bearer k"), ("x-multi", "a"), ("x-multi", "b"), ("x-raw-bin", b"\x00\xff"))
    seen = json.loads(_unary(fn, "Metadata")(b"", metadata=metadata, timeout=TIMEOUT_S))
    assert seen["authorization"] == ["Bearer k"]
    assert seen["x-multi"] == ["a", "b"]
    assert seen["x-raw-bin"] == [base64.b64encode(b"\x00\xff").decode()]


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_fn_fail_aborts_with_the_code_details_and_trailers(fn: Function, code: grpc.StatusCode) -> None:
    metadata = (("x-code", str(code.value[0])), ("x-details", "as asked"))
    with pytest.raises(grpc.RpcError) as raised:
        _unary(fn, "Fail")(b"", metadata=metadata, timeout=TIMEOUT_S)
    error = raised.value
    assert error.code() == code
    assert error.details() == "as asked"
    trailers = error.trailing_metadata()
    assert ("x-why", "failing") in trailers
    assert ("x-blob-bin", b"\x00\x01\x02") in trailers


def test_fn_sleep_reports_time_remaining(fn: Function) -> None:
    # the deadline the client set, less (about) the time slept
    remaining = float(_unary(fn, "Sleep")(b"0.3", timeout=TIMEOUT_S))
    assert 0 < remaining < TIMEOUT_S - 0.2
    assert _unary(fn, "Sleep")(b"0") == b"none"


def test_fn_hang_records_its_cancellation_at_the_deadline(fn: Function, marker_dir: Path) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _unary(fn, "Hang")(b"", metadata=(("x-tag", "deadline"),), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_for_line(marker_dir / "cancelled", "cancelled deadline")


def test_fn_hang_stream_records_a_client_cancel(fn: Function, marker_dir: Path) -> None:
    call = fn.channel.unary_stream("/fnplane.test.Fn/HangStream")(
        b"", metadata=(("x-tag", "client"),), timeout=TIMEOUT_S
    )
    assert next(call) == b"started"
    call.cancel()
    _wait_for_line(marker_dir / "cancelled", "cancelled client")


def test_fn_count_streams_n_messages(fn: Function) -> None:
    count = fn.channel.unary_stream("/fnplane.test.Fn/Count")
    assert list(count(b"4", timeout=TIMEOUT_S)) == [b"0", b"1", b"2", b"3"]
    assert list(count(b"3", metadata=(("x-delay", "0.02"),), timeout=TIMEOUT_S)) == [b"0", b"1", b"2"]
    assert list(count(b"0", timeout=TIMEOUT_S)) == []


def test_fn_sum_adds_all_requests(fn: Function) -> None:
    total = fn.channel.stream_unary("/fnplane.test.Fn/Sum")
    assert total(iter([b"1", b"2", b"39"]), timeout=TIMEOUT_S) == b"42"
    assert total(iter([]), timeout=TIMEOUT_S) == b"0"


def test_fn_chat_answers_each_request_as_it_arrives(fn: Function) -> None:
    requests: queue.Queue[bytes | None] = queue.Queue()
    call = fn.channel.stream_stream("/fnplane.test.Fn/Chat")(_requests_from(requests), timeout=TIMEOUT_S)
    for message in (b"hello", b"again"):
        requests.put(message)
        assert next(call) == message.upper()
    requests.put(None)
    assert list(call) == []


def test_fn_big_replies_two_mebibytes(fn: Function) -> None:
    size = 2 * 1024 * 1024
    assert _unary(fn, "Big")(str(size).encode(), timeout=TIMEOUT_S) == b"x" * size


def test_fn_whoami_names_the_process_and_port(fn: Function) -> None:
    assert _unary(fn, "Whoami")(b"", timeout=TIMEOUT_S).decode() == f"{fn.process.pid} {fn.port}"


def test_fn_delay_start_says_not_serving_first(log_dir: Path) -> None:
    with _running("tests/e2e/grpc_function.py", log_dir, GRPC_TEST_DELAY_START="1.5") as fn:
        statuses = _health_statuses(fn.channel)
        assert next(statuses) == "NOT_SERVING"
        assert next(statuses) == "SERVING"
        statuses.close()


# tests/e2e/triton_function.py


def test_triton_client_infers_identity_with_headers(triton_fn: Function) -> None:
    client = triton.InferenceServerClient(triton_fn.target)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("identity_fp32")
        assert not client.is_model_ready("other")
        model = client.get_model_metadata("identity_fp32")
        assert [(i.name, i.datatype, list(i.shape)) for i in model.inputs] == [("INPUT0", "FP32", [-1])]

        data = np.array([1.5, -2.0, 3.25, 0.0], dtype=np.float32)
        tensor = triton.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer(
            "identity_fp32",
            [tensor],
            outputs=[triton.InferRequestedOutput("OUTPUT0")],
            headers={"x-tenant": "t1"},
            client_timeout=TIMEOUT_S,
        )
        output = result.as_numpy("OUTPUT0")
        assert output.dtype == np.float32
        assert output.tolist() == data.tolist()
        assert result.get_response().parameters["x-tenant"].string_param == "t1"

        with pytest.raises(InferenceServerException) as raised:
            client.infer("other", [tensor], client_timeout=TIMEOUT_S)
        assert raised.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()
