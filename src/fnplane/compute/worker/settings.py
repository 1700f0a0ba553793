"""Settings of the worker process beside each instance (environment prefix FNPLANE_WORKER_), built once
in worker/main.py and handed to every part. The agent sets them when it starts the worker.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_WORKER_", extra="ignore")

    # the InstanceAssignment of this instance, as JSON (shared.models.compute)
    assignment: str = ""
    # where the worker reaches its function
    function_host: str = "127.0.0.1"
    # the function's inference port on that host
    function_port: int = 0
    # where the worker health-checks the function on that host: the port of its `health.port` when that
    # is not its inference port (docs/backends.md "The health port"); 0 = FNPLANE_WORKER_FUNCTION_PORT
    health_port: int = Field(default=0, ge=0, le=65535)
    # empty = do not connect (health checks only)
    nats_url: str = ""
    # the path of this instance's NATS credentials file (.creds, mode 0600, written by the agent)
    nats_creds: str = ""
    # deadline of each NATS connection attempt
    nats_connect_timeout_s: float = 5.0

    # compute.md 1.5: health check period while the function starts
    health_poll_interval_s: float = 1.0
    # steady-state recheck period
    health_recheck_interval_s: float = 10.0
    # how long a 404 may last in steady state before the function counts as unhealthy
    health_not_ready_grace_s: float = 30.0
    # busy time is reported to the agent this often
    metrics_interval_s: float = 5.0
    # after SIGTERM the worker's whole shutdown, the puller's drain (FNPLANE_WORKER_DRAIN_TIMEOUT_S)
    # included, is cut after this long; the agent sets its own stop grace period
    stop_timeout_s: float = 30.0

    # --- requests ---------------------------------------------------------------------------------
    # JetStream redelivers a request whose worker went silent for this long (NVCF: 30 s)
    ack_wait_s: float = 30.0
    # in-progress acks to JetStream and heartbeats to the gateway, this often
    progress_interval_s: float = 5.0
    # a pull request stays open on the server this long before it is renewed
    pull_expires_s: float = 5.0
    # response chunks in flight to the gateway before the worker waits for credit
    response_window_chunks: int = 16
    # a request that found the function unreachable goes back to the queue (the instance takes no
    # more until its health check passes) up to this many deliveries; the last is answered 500
    unreachable_attempts: int = Field(default=5, ge=1)
    # no credit from the gateway for this long: the client is gone, stop
    credit_timeout_s: float = 60.0
    # one chunk of a large request body from the gateway; it answers within half of this, with nothing
    # yet if its client is slow (the worker pulls again), so this bounds the gateway's silence, not the
    # client's pace (that is FNPLANE_UP_BODY_IDLE_TIMEOUT_S)
    body_pull_timeout_s: float = 10.0
    # the instance's request directory: each request gets `<root>/<requestId>/` (0700) holding its
    # NVCF-ASSET-DIR (`assets`) and NVCF-LARGE-OUTPUT-DIR (`output`); the agent sets it to
    # `<state>/requests/<instance>` (empty: a new private temporary directory)
    request_root: str = ""
    # the function runs as another user (a container's image user): request directories 0777 and
    # asset files 0644, not 0700 / 0600 (the root lies in the agent's 0700 state dir; only this
    # instance's container has it mounted)
    request_dirs_shared: bool = False
    # --- gRPC sessions ----------------------------------------------------------------------------
    # the proxy confirms a session the worker took within this long, else the worker lets it go
    session_announce_timeout_s: float = 5.0
    # no message from the proxy holding a session for this long (it sends keepalives): the session ends
    session_silence_s: float = 20.0
    # the largest gRPC message to or from the function (gRPC's own default: 4 MiB)
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    # detached results up to this size go inline into the status bucket, bigger ones to the object store
    inline_result_bytes: int = 256 * 1024
    # how often the progress file is looked at while a pexec request runs
    progress_poll_s: float = 0.1
    # a detached request's status record is rewritten this often while it runs, so it never expires
    # before its request ends (0: a third of the status bucket's TTL)
    status_refresh_s: float = 0.0
    # telling the caller a request failed (the error head, or an errored status record) is tried this
    # often before the request is left to JetStream's redelivery instead of being acked
    failure_report_attempts: int = 3
    # on aclose, in-flight requests get this long to finish before they are cancelled
    drain_timeout_s: float = 10.0
    # connecting to the function and to JetStream's API
    connect_timeout_s: float = 5.0
    # NVCF-ENV / NVCF-NSPECTID values given to the function
    environment: str = "local"
    nspect_id: str = ""

    @model_validator(mode="after")
    def _health_port_defaults_to_the_function_port(self) -> WorkerSettings:
        if self.health_port == 0:
            self.health_port = self.function_port
        return self
