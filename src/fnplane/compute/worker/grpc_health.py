"""The standard gRPC health protocol (`grpc.health.v1.Health/Check`, service "") against the function."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fnplane.compute.worker.health import HealthResult


class GrpcHealthCheck:
    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.target = f"{host}:{port}"
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def __call__(self) -> HealthResult:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as error:
            return HealthResult(False, False, f"gRPC health {self.target}: {error.code().name}")
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        # NOT_SERVING is the gRPC way of saying "up, not ready yet"
        return HealthResult(
            status == "SERVING", status == "NOT_SERVING", f"gRPC health {self.target}: {status}"
        )

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
