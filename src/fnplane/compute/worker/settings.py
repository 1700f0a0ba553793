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
    function_host: str = "127.0.0.1"
    function_port: int = 0
    # empty = do not connect (health checks only)
    nats_url: str = ""
    nats_connect_timeout_s: float = 5.0

    # compute.md 1.5: startup polling, steady-state recheck, how long a 404 may last in steady state
    health_poll_interval_s: float = 1.0
    health_recheck_interval_s: float = 10.0
    health_not_ready_grace_s: float = 30.0
    metrics_interval_s: float = 5.0
    # how long in-flight requests may finish after SIGTERM
    drain_timeout_s: float = 30.0
