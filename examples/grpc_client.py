"""Call examples/grpc_echo.py through the platform's gRPC port; the platform routes by metadata.

    FNPLANE_GRPC=127.0.0.1:8081 FNPLANE_API_KEY=nvapi-... FUNCTION_ID=... python examples/grpc_client.py

Prints the reply and the request id the platform gave the call (`nvcf-reqid`, "-" if absent).
"""

import os

import grpc

target = os.environ.get("FNPLANE_GRPC", "127.0.0.1:8081")
key = os.environ["FNPLANE_API_KEY"]
function_id = os.environ["FUNCTION_ID"]

with grpc.insecure_channel(target) as channel:
    # no serializers: the request and the reply are raw bytes
    unary = channel.unary_unary("/fnplane.examples.Echo/Unary")
    metadata = (("authorization", "Bearer " + key), ("function-id", function_id))
    reply, call = unary.with_call(b"hello over gRPC", metadata=metadata, timeout=30)
    request_id = dict(call.initial_metadata()).get("nvcf-reqid", "-")
    print(reply.decode(), request_id)
