"""A function whose health check has a port of its own (`health.port` != `inferencePort`, as NVCF's Triton
containers: inference on 8001, `GET /v2/health/ready` on 8000), through a real `fnplane up` with each
backend: it becomes ACTIVE only if the worker checks the health port, and then answers pexec.

The function (tests/e2e/health_port_function.py) answers 404 for the health path on its inference port.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import httpx
from cli_process import Cli
from up_process import UpProcess, deploy_function

from podman import PodmanService

FUNCTION = Path(__file__).resolve().parent / "health_port_function.py"
HEALTH = {
    "protocol": "HTTP",
    "port": 8000,
    "uri": "/health-only",
    "timeout": "PT5S",
    "expectedStatusCode": 200,
}


def _admin(up: UpProcess, key: str) -> dict[str, str]:
    up.wait_healthy()
    return {"Authorization": f"Bearer {key}"}


def _pexec(up: UpProcess, headers: dict[str, str], function_id: str) -> dict:
    r = httpx.post(
        f"{up.url}/v2/nvcf/pexec/functions/{function_id}", json={"a": 1}, headers=headers, timeout=30
    )
    assert r.status_code == 200, r.text
    answer = dict(r.json())
    assert answer["echo"] == {"a": 1}
    return answer


def test_the_process_backend_gives_the_health_check_a_port_of_its_own(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(tmp_path / "home", env={"FNPLANE_ADMIN_KEY": key})
    headers = _admin(up, key)
    body = {
        "name": "health-port",
        "inferenceUrl": "/infer",
        "inferencePort": 8001,
        "containerArgs": f"{sys.executable} {FUNCTION} --port $(PORT) --health-port $(HEALTH_PORT)",
        "health": HEALTH,
    }
    fn = deploy_function(up, headers, body)
    stored = httpx.get(f"{up.url}/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}", headers=headers)
    assert stored.json()["function"]["health"]["port"] == 8000

    environ = _pexec(up, headers, fn["id"])["environ"]
    # two free ports the agent picked, not the declared ones; the NVCF variable names the health one
    port, health_port = int(environ["PORT"]), int(environ["HEALTH_PORT"])
    assert port != health_port and environ["INFERENCE_PORT"] == str(port)
    assert environ["INFERENCE_HEALTH_PORT"] == str(health_port)
    assert environ["INFERENCE_HEALTH_ENDPOINT"] == "/health-only"
    assert httpx.get(f"http://127.0.0.1:{port}/health-only").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{health_port}/health-only").status_code == 200

    # the CLI registers the same health object from NVCF's flags
    cli = Cli(up.url, key, tmp_path / "config.json")
    created = cli.json(
        "function", "create", "--name", "health-port-cli", "--inference-url", "/infer",
        "--inference-port", "8001", "--container-args", body["containerArgs"], "--health-uri", "/health-only",
        "--health-port", "8000", "--health-timeout", "PT5S",
    )  # fmt: skip
    assert created["function"]["health"] == HEALTH
    assert up.stop() == 0


def test_the_container_backend_publishes_the_health_port_beside_the_inference_port(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, container_images: dict[str, str]
) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(
        tmp_path / "home",
        env={**podman_service.env, "FNPLANE_ADMIN_KEY": key},
        args=["--backend", "container"],
    )
    headers = _admin(up, key)
    body = {
        "name": "health-port-image",
        "inferenceUrl": "/infer",
        "inferencePort": 8001,
        # the image's own command: it reads $PORT and $HEALTH_PORT
        "containerImage": container_images["health-port"],
        "health": HEALTH,
    }
    fn = deploy_function(up, headers, body)
    environ = _pexec(up, headers, fn["id"])["environ"]
    # inside its container the function listens on the ports it declared
    assert (environ["PORT"], environ["HEALTH_PORT"], environ["INFERENCE_HEALTH_PORT"]) == (
        "8001",
        "8000",
        "8000",
    )

    mine = {"filters": json.dumps({"label": [f"fnplane.function={fn['id']}"]})}
    with podman_service.engine() as engine:
        [container] = engine.get("/containers/json", params=mine).json()
        inspected = engine.get(f"/containers/{container['Id']}/json").json()
        ports = inspected["NetworkSettings"]["Ports"]
        # both published, on loopback only, each on a host port of its own
        bindings = {name: ports[name] for name in ("8001/tcp", "8000/tcp")}
        assert all(len(b) == 1 and b[0]["HostIp"] == "127.0.0.1" for b in bindings.values()), bindings
        inference, health = (int(b[0]["HostPort"]) for b in bindings.values())
        assert inference != health
        assert httpx.get(f"http://127.0.0.1:{inference}/health-only").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{health}/health-only").status_code == 200
        assert up.stop() == 0
        assert engine.get("/containers/json", params={**mine, "all": "1"}).json() == []
