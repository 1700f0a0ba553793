"""`fnplane up --backend container`: a function's image served through pexec, from a real Podman."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
from up_process import UpProcess, deploy_function

from podman import PodmanService


def test_up_with_the_container_backend_serves_the_image_and_stops_it(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, container_images: dict[str, str]
) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    up = start_up(
        tmp_path / "home",
        env={**podman_service.env, "FNPLANE_ADMIN_KEY": key},
        args=["--backend", "container"],
    )
    assert up.wait_healthy()["isolation"] == "container"
    headers = {"Authorization": f"Bearer {key}"}
    body = {
        "name": "echo-image",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": container_images["echo"],
        # the image's command, given as NVCF arguments (they replace its CMD)
        "containerArgs": "python3 /app/echo_server.py",
    }
    fn = deploy_function(up, headers, body)
    r = httpx.post(f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}", json={"a": 1}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["echo"] == {"a": 1}

    mine = {"filters": json.dumps({"label": [f"fnplane.function={fn['id']}"]})}
    with podman_service.engine() as engine:
        assert len(engine.get("/containers/json", params=mine).json()) == 1
        assert up.stop() == 0
        # nothing of the function outlives `fnplane up`
        assert engine.get("/containers/json", params={**mine, "all": "1"}).json() == []


def test_up_with_the_container_backend_and_no_runtime_exits_1_saying_so(
    tmp_path: Path, start_up: type[UpProcess]
) -> None:
    up = start_up(
        tmp_path / "home",
        env={"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"},
        args=["--backend", "container"],
    )
    assert up.process.wait(60) == 1
    assert f"no container runtime answers at unix://{tmp_path}/nothing.sock" in up.stderr
