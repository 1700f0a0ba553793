"""The gRPC proxy of the invocation plane (proxy.py wires it; one module per part)."""

import os

# The process that serves gRPC also starts function processes (fork + exec): grpcio's fork handlers
# would only log, on every start, that they skip themselves. Nothing here uses gRPC across a fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
