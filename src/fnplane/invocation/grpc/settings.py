"""Settings of the gRPC proxy (environment prefix FNPLANE_GRPC_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GrpcSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_GRPC_")

    # no worker took a new session this long after it was queued: DEADLINE_EXCEEDED (NVCF: 30 s)
    attach_timeout_s: float = Field(default=30.0, gt=0)
    # a session without calls ends this long after its last one (NVCF: 30 s)
    session_idle_s: float = Field(default=30.0, gt=0)
    # the proxy tells the worker holding a session that it still holds it this often (the worker
    # ends a session it hears nothing of for FNPLANE_WORKER_SESSION_SILENCE_S)
    session_keepalive_s: float = Field(default=5.0, gt=0)
    # the largest message of a call, either way (gRPC's own default: 4 MiB; one message travels as one
    # NATS message, so at most the server's max_payload minus headers)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0, le=7 * 1024 * 1024)
    # a call is opened on the worker with its request when that arrives within this long (most
    # calls: one message, one batch to the function); a client that sends later is not waited for
    open_grace_s: float = Field(default=0.005, ge=0, le=1)
    # request messages of one call in flight to the worker before the proxy waits for its credit
    request_window: int = Field(default=8, ge=1)
    # a client may ping an idle connection this often without being sent away (gRPC's default
    # allows one ping per 5 minutes without calls; clients keeping a session alive ping more often)
    min_client_ping_interval_s: float = Field(default=5.0, gt=0)
    # on stop, calls in flight get this long to finish
    stop_grace_s: float = 5.0
