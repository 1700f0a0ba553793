"""The gRPC function the platform tests call: service `fnplane.test.Fn` on raw bytes (no protobuf).

Requests and replies are bytes; numbers are ASCII. Request metadata named below is read by the method.

    Echo        unary: replies the request; initial metadata `x-echo-<k>` for each request key `x-<k>`,
                trailing metadata `x-trailer: unary`
    Metadata    unary: replies JSON {key: [values]} of all request metadata (`-bin` values base64)
    Fail        unary: aborts with status code `x-code` (int, default 13 INTERNAL) and details
                `x-details`; trailing metadata `x-why: failing`, `x-blob-bin: b"\\x00\\x01\\x02"`
    Sleep       unary: sleeps the request's seconds (float), replies `context.time_remaining()` or "none"
    Hang        unary: waits until cancelled
    HangStream  server-streaming: yields b"started", then waits until cancelled
    Count       server-streaming: request n, yields b"0" ... b"<n-1>", `x-delay` seconds apart (default 0)
    Sum         client-streaming: replies the sum of the requests
    Chat        bidi: replies each request upper-cased as it arrives
    Big         unary: request n, replies n bytes of b"x"
    Whoami      unary: replies "<pid> <PORT>", so a test sees which instance served it

Environment: `PORT` (listens on 127.0.0.1:$PORT); `GRPC_TEST_MARKER_DIR`: Hang and HangStream append
a line `cancelled <x-tag>` to `$GRPC_TEST_MARKER_DIR/cancelled` when cancelled; and
`GRPC_TEST_DELAY_START`: seconds the health service ("") says NOT_SERVING before SERVING.
Messages up to 64 MiB are accepted both ways, so the platform's own limits are the ones a test meets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "fnplane.test.Fn"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _metadata(context: grpc.aio.ServicerContext, key: str, default: str = "") -> str:
    for k, value in context.invocation_metadata() or ():
        if k == key:
            return value.decode() if isinstance(value, bytes) else value
    return default


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    echoed = tuple(
        (f"x-echo-{k[2:]}", v) for k, v in context.invocation_metadata() or () if k.startswith("x-")
    )
    await context.send_initial_metadata(echoed)
    context.set_trailing_metadata((("x-trailer", "unary"),))
    return request


async def metadata(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    seen: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        seen.setdefault(key, []).append(text)
    return json.dumps(seen).encode()


async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    code = int(_metadata(context, "x-code", "13"))
    status = next(s for s in grpc.StatusCode if s.value[0] == code)
    trailers = (("x-why", "failing"), ("x-blob-bin", b"\x00\x01\x02"))
    await context.abort(status, _metadata(context, "x-details"), trailing_metadata=trailers)
    raise AssertionError("abort returns only by raising")


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(float(request))
    remaining = context.time_remaining()
    return b"none" if remaining is None else str(remaining).encode()


def _record_cancel(context: grpc.aio.ServicerContext) -> None:
    # small and synchronous on purpose: the task is being cancelled, it should not await anything
    marker_dir = os.environ.get("GRPC_TEST_MARKER_DIR")
    if marker_dir:
        with (Path(marker_dir) / "cancelled").open("a") as marker:
            marker.write(f"cancelled {_metadata(context, 'x-tag')}\n")


async def hang(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _record_cancel(context)
        raise
    raise AssertionError("never set")


async def hang_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    try:
        yield b"started"
        await asyncio.Event().wait()
    except (asyncio.CancelledError, GeneratorExit):
        # a cancel that arrives before the generator resumed past its yield closes it there
        # (GeneratorExit) instead of cancelling the wait
        _record_cancel(context)
        raise


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    delay_s = float(_metadata(context, "x-delay", "0"))
    for i in range(int(request)):
        if i and delay_s:
            await asyncio.sleep(delay_s)
        yield str(i).encode()


async def sum_(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    return str(sum([int(r) async for r in requests])).encode()


async def chat(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request.upper()


async def big(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"x" * int(request)


async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return f"{os.getpid()} {os.environ.get('PORT', '')}".encode()


# No (de)serializers: the handlers see and return bytes.
HANDLER = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Hang": grpc.unary_unary_rpc_method_handler(hang),
        "HangStream": grpc.unary_stream_rpc_method_handler(hang_stream),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(sum_),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
        "Big": grpc.unary_unary_rpc_method_handler(big),
        "Whoami": grpc.unary_unary_rpc_method_handler(whoami),
    },
)


async def main() -> None:
    port = int(os.environ["PORT"])
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    server = grpc.aio.server(options=options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((HANDLER,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    await asyncio.sleep(float(os.environ.get("GRPC_TEST_DELAY_START", "0")))
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"grpc_function: serving on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
