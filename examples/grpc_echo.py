"""A gRPC echo function on raw bytes: service `fnplane.examples.Echo`, all four call shapes.

Register it with

    "inferenceUrl": "/grpc", "inferencePort": 8001, "containerArgs": "python examples/grpc_echo.py",
    "health": {"protocol": "gRPC", "port": 8001, "uri": "/", "timeout": "PT10S", "expectedStatusCode": 200}

where `python` has grpcio (from this directory, `.venv/bin/python` does; a bare `python` on PATH may not),
and call it through the platform's gRPC port (docs/grpc-example-snippet.md, examples/grpc_client.py).

    Unary          echoes the request
    ServerStream   replies the request `x-count` times (request metadata, default 3)
    ClientStream   replies all requests concatenated
    Bidi           echoes each request as it arrives

Every call answers with initial metadata `x-echo-<key>` for each request metadata key `x-<...>` and
trailing metadata `x-trailer: done`. Messages are raw bytes (no protobuf), so any client can call it with
a generic stub such as `channel.unary_unary("/fnplane.examples.Echo/Unary")`. It listens on
127.0.0.1:$PORT and reports "" SERVING on the standard health service once it is ready.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "fnplane.examples.Echo"


async def _echo_metadata(context: grpc.aio.ServicerContext) -> None:
    echoed = tuple(
        (f"x-echo-{key[2:]}", value)
        for key, value in context.invocation_metadata() or ()
        if key.startswith("x-")
    )
    await context.send_initial_metadata(echoed)
    context.set_trailing_metadata((("x-trailer", "done"),))


def _count(context: grpc.aio.ServicerContext) -> int:
    for key, value in context.invocation_metadata() or ():
        if key == "x-count":
            return int(value)
    return 3


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await _echo_metadata(context)
    return request


async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    await _echo_metadata(context)
    for _ in range(_count(context)):
        yield request


async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    await _echo_metadata(context)
    return b"".join([request async for request in requests])


async def bidi(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    await _echo_metadata(context)
    async for request in requests:
        yield request


# No (de)serializers: the handlers see and return bytes.
HANDLER = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    },
)


async def main() -> None:
    port = int(os.environ.get("PORT", "8001"))
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers((HANDLER,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"grpc_echo: listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
