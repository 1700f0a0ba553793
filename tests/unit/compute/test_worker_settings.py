"""The worker process has one settings class: each FNPLANE_WORKER_* variable reaches the part using it."""

from __future__ import annotations

import pytest

from fnplane.compute.worker.settings import WorkerSettings


def test_one_settings_object_holds_the_process_and_the_request_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FNPLANE_WORKER_STOP_TIMEOUT_S", "7")
    monkeypatch.setenv("FNPLANE_WORKER_DRAIN_TIMEOUT_S", "3")
    monkeypatch.setenv("FNPLANE_WORKER_RESPONSE_WINDOW_CHUNKS", "4")
    settings = WorkerSettings()
    assert settings.stop_timeout_s == 7.0
    assert settings.drain_timeout_s == 3.0
    assert settings.response_window_chunks == 4


def test_the_health_port_is_the_function_port_unless_the_agent_gives_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FNPLANE_WORKER_FUNCTION_PORT", "5555")
    assert WorkerSettings().health_port == 5555
    monkeypatch.setenv("FNPLANE_WORKER_HEALTH_PORT", "6666")
    settings = WorkerSettings()
    assert (settings.function_port, settings.health_port) == (5555, 6666)
    monkeypatch.setenv("FNPLANE_WORKER_HEALTH_PORT", "65536")
    with pytest.raises(ValueError, match="health_port"):
        WorkerSettings()
