"""Helpers of the compute unit tests: an assignment factory and short-threshold agent settings."""

from __future__ import annotations

import uuid
from pathlib import Path

from fnplane.compute.settings import AgentSettings
from fnplane.shared.models.compute import HealthCheck, InstanceAssignment, InstanceState

REPO = Path(__file__).resolve().parents[3]

# `python -c` program: a parent that ignores SIGTERM and a child that ignores it too, in the same group;
# "up" is printed only once the child runs (Popen returns after its exec)
STUBBORN = (
    "import signal,subprocess,sys,time;"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "subprocess.Popen([sys.executable,'-c',"
    "'import signal,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);time.sleep(60)']);"
    "print('up',flush=True);time.sleep(60)"
)


def make_assignment(
    container_args: str, *, protocol: str = "HTTP", **overrides: object
) -> InstanceAssignment:
    fields: dict[str, object] = {
        "instanceId": str(uuid.uuid4()),
        "functionId": str(uuid.uuid4()),
        "functionVersionId": str(uuid.uuid4()),
        "functionName": "echo",
        "ncaId": "nvcf-default",
        "desired": True,
        "state": InstanceState.REQUESTED,
        "gpu": "L40S",
        "instanceType": "LOCAL.GPU.L40S_1x",
        "backend": "local",
        "region": "local",
        "containerArgs": container_args,
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "health": HealthCheck(
            protocol=protocol, uri="/v2/health/ready", port=8000, timeoutSeconds=2.0, expectedStatusCode=200
        ),
        "maxRequestConcurrency": 2,
    }
    fields.update(overrides)
    return InstanceAssignment.model_validate(fields)


def fast_settings(home: Path, **overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "home": home,
        "workdir": REPO,
        "cluster_name": f"test-{uuid.uuid4().hex[:8]}",
        "discover_gpus": False,
        "startup_timeout_s": 20.0,
        "restart_backoff_initial_s": 0.1,
        "restart_backoff_max_s": 0.5,
        "restart_window_s": 60.0,
        "stop_grace_s": 3.0,
        "health_poll_interval_s": 0.2,
        "health_recheck_interval_s": 0.5,
        "health_not_ready_grace_s": 1.0,
        "metrics_interval_s": 0.5,
        "heartbeat_interval_s": 1.0,
        "poll_interval_s": 1.0,
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]
