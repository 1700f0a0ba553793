"""A function speaking Triton's gRPC protocol (`inference.GRPCInferenceService`) for one model.

Model `identity_fp32`: input `INPUT0` (FP32, shape [-1]) -> output `OUTPUT0`, the same tensor. It
implements ServerLive, ServerReady, ModelReady, ModelMetadata and ModelInfer, with the stubs that
`tritonclient[grpc]` ships, so `tritonclient.grpc.InferenceServerClient(...).infer("identity_fp32",
inputs, headers={...})` works against it (the client sends tensors as `raw_input_contents`, and
`headers` as gRPC metadata).

ModelInfer also returns every text metadata key of the request as a string response parameter of the
same name, so a test sees what the function received (`result.get_response().parameters`).
An unknown model is NOT_FOUND; a wrong input is INVALID_ARGUMENT. Listens on 127.0.0.1:$PORT and
reports "" SERVING on the standard health service.
"""

from __future__ import annotations

import asyncio
import os

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

MODEL = "identity_fp32"


class IdentityServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(
        self, request: service_pb2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: service_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(ready=request.name == MODEL)

    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelMetadataResponse:
        await _known_model(request.name, context)
        return service_pb2.ModelMetadataResponse(
            name=MODEL,
            versions=["1"],
            platform="python",
            inputs=[
                service_pb2.ModelMetadataResponse.TensorMetadata(name="INPUT0", datatype="FP32", shape=[-1])
            ],
            outputs=[
                service_pb2.ModelMetadataResponse.TensorMetadata(name="OUTPUT0", datatype="FP32", shape=[-1])
            ],
        )

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        await _known_model(request.model_name, context)
        if [(i.name, i.datatype) for i in request.inputs] != [("INPUT0", "FP32")]:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected one input INPUT0 of FP32")
        if len(request.raw_input_contents) != 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "INPUT0 must come as raw_input_contents")
        if any(o.name != "OUTPUT0" for o in request.outputs):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the only output is OUTPUT0")
        response = service_pb2.ModelInferResponse(
            model_name=MODEL,
            model_version="1",
            id=request.id,
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name="OUTPUT0", datatype="FP32", shape=request.inputs[0].shape
                )
            ],
            raw_output_contents=[request.raw_input_contents[0]],
        )
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str):
                response.parameters[key].string_param = value
        return response


async def _known_model(name: str, context: grpc.aio.ServicerContext) -> None:
    if name != MODEL:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name!r}; this server has {MODEL!r}")


async def main() -> None:
    port = int(os.environ["PORT"])
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(IdentityServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"triton_function: serving {MODEL} on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
