"""Through the real platform (`fnplane up`, its agent and examples/inv_function.py):

* scale from zero: a version deployed with minInstances 0 is ACTIVE with no instance; a pexec call makes
  the gateway's wake hint start one (the autoscaler is off, so nothing else could) and is answered 200
  within its poll window. The delayed hint (FNPLANE_GATEWAY_WAKE_AFTER_S) is set beyond the poll window,
  so the answer proves the wake was sent at once, because no worker pulled the version's queue;
* a function process killed mid-request: the caller gets a problem+json 500 from the worker, the agent
  restarts the process and the next call is answered by the new one.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

import httpx
from up_process import UpProcess, deploy_inv_function, function_processes

FUNCTION = Path(__file__).resolve().parents[3] / "examples" / "inv_function.py"


def deploy(up: UpProcess, headers: dict[str, str], min_instances: int) -> dict:
    return deploy_inv_function(
        up,
        headers,
        name="inv-recovery",
        inference_url="/slow",
        max_concurrency=2,
        min_instances=min_instances,
    )


def start(tmp_path: Path, start_up: type[UpProcess], **env: str) -> tuple[UpProcess, dict[str, str]]:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key, **env})
    up.wait_healthy()
    return up, {"Authorization": f"Bearer {key}"}


def test_scale_from_zero_through_the_gateway_wake_hint(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up, auth = start(
        tmp_path, start_up, FNPLANE_AUTOSCALER_ENABLED="false", FNPLANE_GATEWAY_WAKE_AFTER_S="3600"
    )
    fn = deploy(up, auth, min_instances=0)
    with httpx.Client(base_url=up.url, headers=auth, timeout=90) as client:
        d = client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}")
        assert d.status_code == 200, d.text
        r = client.post(
            f"/v2/nvcf/pexec/functions/{fn['id']}", headers={"NVCF-POLL-SECONDS": "60"}, json={"seconds": 0}
        )
        assert r.status_code == 200, r.text
        assert r.headers["nvcf-status"] == "fulfilled" and r.json()["slept"] == 0
    assert up.stop() == 0


def test_a_killed_function_process_gives_a_problem_and_is_restarted(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    up, auth = start(tmp_path, start_up)
    fn = deploy(up, auth, min_instances=1)
    url = f"/v2/nvcf/pexec/functions/{fn['id']}"
    poll = {"NVCF-POLL-SECONDS": "30"}
    with httpx.Client(base_url=up.url, headers=auth, timeout=60) as client:
        r = client.post(url, headers=poll, json={"seconds": 0})
        assert r.status_code == 200, r.text
        # the host pid (in its sandbox the function sees its own PID namespace)
        [first] = function_processes(fn["id"])
        first_pid = first.pid
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["r"] = client.post(url, headers=poll, json={"seconds": 20})

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)  # the worker is waiting for the function's answer
        os.kill(first_pid, signal.SIGKILL)
        caller.join(30)
        assert not caller.is_alive()
        r = result["r"]
        assert r.status_code == 500 and r.headers["nvcf-status"] == "errored"
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].startswith("urn:inference-connection:problem-details:")
        # the agent restarts the process (its restart backoff), then the same instance serves again;
        # requests sent meanwhile wait in the queue for it (none is answered "connection refused")
        for _ in range(3):
            r = client.post(url, headers=poll, json={"seconds": 0})
            assert r.status_code == 200, r.text
        assert [p.pid for p in function_processes(fn["id"])] not in ([], [first_pid])
    assert up.stop() == 0
