"""Helpers of the compute unit tests: short-threshold agent settings (and the assignment factory of
tests/assignments.py, re-exported)."""

from __future__ import annotations

import uuid
from pathlib import Path

from assignments import make_assignment
from fnplane.compute.settings import AgentSettings

REPO = Path(__file__).resolve().parents[3]
__all__ = ["REPO", "STUBBORN", "fast_settings", "make_assignment"]

# `python -c` program: a parent that ignores SIGTERM and a child that ignores it too, in the same group;
# "up" is printed only once the child runs (Popen returns after its exec)
STUBBORN = (
    "import signal,subprocess,sys,time;"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "subprocess.Popen([sys.executable,'-c',"
    "'import signal,time;signal.signal(signal.SIGTERM,signal.SIG_IGN);time.sleep(60)']);"
    "print('up',flush=True);time.sleep(60)"
)


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
