"""The gRPC proxy's small decisions: which metadata names a call's target, the status of each error,
and the front door that names every client connection and reports its end."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fnplane.compute.worker.grpc_sessions import function_metadata
from fnplane.invocation.grpc.calls import relayable
from fnplane.invocation.grpc.codes import status_code, status_of
from fnplane.invocation.grpc.front import ClientConnection, GrpcFront
from fnplane.invocation.grpc.proxy import call_target
from fnplane.shared import errors, wire

FID = "6d2f3b1c-0000-4000-8000-000000000000"


def test_call_target_reads_bearer_function_and_version() -> None:
    metadata = [("authorization", "Bearer k1"), ("function-id", FID.upper()), ("function-version-id", FID)]
    assert call_target(metadata) == ("k1", FID, FID)
    assert call_target([("authorization", "bearer  k2 "), ("function-id", FID)]) == ("k2", FID, None)


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ([("function-id", FID)], errors.UnauthorizedError),
        ([("authorization", "Basic x"), ("function-id", FID)], errors.UnauthorizedError),
        ([("authorization", "Bearer "), ("function-id", FID)], errors.UnauthorizedError),
        ([("authorization", "Bearer k")], errors.BadRequestError),
        ([("authorization", "Bearer k"), ("function-id", "nope")], errors.BadRequestError),
        (
            [("authorization", "Bearer k"), ("function-id", FID), ("function-version-id", "x")],
            errors.BadRequestError,
        ),
    ],
)
def test_call_target_refuses_what_names_no_target(metadata: list, error: type) -> None:
    with pytest.raises(error):
        call_target(metadata)


def test_each_error_has_its_grpc_status() -> None:
    assert status_of(errors.UnauthorizedError("x")) is grpc.StatusCode.UNAUTHENTICATED
    assert status_of(errors.ForbiddenError("x")) is grpc.StatusCode.PERMISSION_DENIED
    assert status_of(errors.NotFoundError("x")) is grpc.StatusCode.NOT_FOUND
    assert status_of(errors.BadRequestError("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(errors.FailedPreconditionError("x")) is grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(errors.TooManyRequestsError("x")) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_of(errors.GatewayTimeoutError("x")) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_of(errors.UnavailableError("x")) is grpc.StatusCode.UNAVAILABLE
    assert status_of(errors.FnplaneError("x")) is grpc.StatusCode.INTERNAL
    assert status_code(5) is grpc.StatusCode.NOT_FOUND and status_code(99) is grpc.StatusCode.UNKNOWN


def test_only_a_degraded_function_is_a_failed_precondition() -> None:
    from fnplane.invocation.access import choose_version
    from fnplane.shared.models.access import AccessGrant, VersionTarget

    def grant(*statuses: str) -> AccessGrant:
        versions = [
            VersionTarget(
                functionVersionId=f"v{i}",
                functionName="f",
                ownerNcaId="nca",
                status=status,
                inferenceUrl="/grpc",
                functionType="DEFAULT",
            )
            for i, status in enumerate(statuses)
        ]
        return AccessGrant(
            ncaId="nca", subject="s", scopes=["invoke_function"], functionId=FID, versions=versions
        )

    with pytest.raises(errors.FailedPreconditionError):
        choose_version(grant("DEGRADED"), None)
    with pytest.raises(errors.NotFoundError):
        choose_version(grant("INACTIVE"), None)


def test_metadata_the_function_sees_and_the_client_gets_back() -> None:
    call = wire.GrpcCall(
        "c",
        "/a.B/C",
        wire.encode_metadata(
            [
                ("x-a", "1"),
                ("user-agent", "ua"),
                ("grpc-timeout", "1S"),
                ("nvcf-reqid", "forged"),
                ("k-bin", b"\x00"),
            ]
        ),
        "r",
    )
    seen = function_metadata(call, [("NVCF-REQID", "real")])
    assert seen == [("x-a", "1"), ("k-bin", b"\x00"), ("nvcf-reqid", "real")]
    assert relayable([("x-a", "1"), ("content-type", "application/grpc"), ("grpc-encoding", "gzip")]) == [
        ("x-a", "1")
    ]
    details = ("grpc-status-details-bin", b"\x08\x05")
    assert relayable([details], trailers=True) == [details] and relayable([details]) == []


async def test_the_front_names_each_connection_and_reports_its_end() -> None:
    received: list[bytes] = []

    async def inner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(inner, "127.0.0.1", 0)
    inner_port = server.sockets[0].getsockname()[1]
    closed: list[ClientConnection] = []
    front = GrpcFront("127.0.0.1", 0, inner_port, closed.append)
    await front.start()
    port = front._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.read(100), 5) == b"pong"
    assert received == [b"ping"]
    for _ in range(100):
        if closed:
            break
        await asyncio.sleep(0.02)
    assert len(closed) == 1 and closed[0].peer.startswith("ipv4:127.0.0.1:")
    assert front.connection(closed[0].peer) is None and front.open_connections == 0
    writer.close()
    await front.aclose()
    server.close()
    await server.wait_closed()
