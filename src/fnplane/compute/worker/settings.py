"""Settings of the worker process beside each instance (environment prefix FNPLANE_WORKER_).

The agent sets them when it starts the worker; the request puller (worker/requests.py) reads its own
fields from the same object.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_WORKER_", extra="ignore")

    # the InstanceAssignment of this instance, as JSON (shared.models.compute)
    assignment: str = ""
    # where the worker reaches its function
    function_host: str = "127.0.0.1"
    function_port: int = 0
    # empty = do not connect (health checks only)
    nats_url: str = ""
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
