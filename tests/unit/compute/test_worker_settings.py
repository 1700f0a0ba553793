"""The worker process reads two settings classes from one environment: no variable may mean two things."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from fnplane.compute.worker.requests import WorkerRequestSettings
from fnplane.compute.worker.settings import WorkerSettings


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def test_worker_and_request_settings_share_no_environment_variable() -> None:
    assert not _env_names(WorkerSettings) & _env_names(WorkerRequestSettings)


def test_the_stop_timeout_is_the_compute_side_name() -> None:
    assert "FNPLANE_WORKER_STOP_TIMEOUT_S" in _env_names(WorkerSettings)
    assert "FNPLANE_WORKER_DRAIN_TIMEOUT_S" in _env_names(WorkerRequestSettings)
