"""gRPC helpers of the clients: the metadata an invocation needs and a channel to the gRPC proxy.

`grpc` is imported here only, and only when a channel is asked for (the SDK works without grpcio).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fnplane.sdk.connection import Connection

if TYPE_CHECKING:
    import grpc
    import grpc.aio

DEFAULT_GRPC_PORT = 8081


def grpc_target_for(base_url: str, grpc_target: str | None) -> str:
    """`grpc_target`, else $FNPLANE_GRPC, else base_url's host with port 8081."""
    if grpc_target:
        return grpc_target
    if os.environ.get("FNPLANE_GRPC"):
        return os.environ["FNPLANE_GRPC"]
    host = urlsplit(base_url).hostname or "127.0.0.1"
    return f"[{host}]:{DEFAULT_GRPC_PORT}" if ":" in host else f"{host}:{DEFAULT_GRPC_PORT}"


def metadata(bearer: str | None, function_id: str, version_id: str | None) -> list[tuple[str, str]]:
    pairs = [("function-id", function_id)]
    if version_id:
        pairs.append(("function-version-id", version_id))
    if bearer:
        pairs.insert(0, ("authorization", f"Bearer {bearer}"))
    return pairs


def channel(target: str, *, tls: bool, aio: bool) -> Any:
    import grpc
    import grpc.aio

    if aio:
        return (
            grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
            if tls
            else grpc.aio.insecure_channel(target)
        )
    return (
        grpc.secure_channel(target, grpc.ssl_channel_credentials()) if tls else grpc.insecure_channel(target)
    )


class GrpcMethods:
    _conn: Connection
    _grpc_target: str | None
    base_url: str

    async def grpc_metadata(self, function_id: str, version_id: str | None = None) -> list[tuple[str, str]]:
        """The call metadata of a gRPC invocation: authorization (the current credential),
        function-id and function-version-id."""
        return metadata(await self._conn.credentials.bearer(), function_id, version_id)

    async def grpc_channel(self, target: str | None = None, *, tls: bool = False) -> grpc.aio.Channel:
        """A grpc.aio channel to the gRPC proxy (target: see `grpc_target_for`)."""
        return channel(grpc_target_for(self.base_url, target or self._grpc_target), tls=tls, aio=True)
