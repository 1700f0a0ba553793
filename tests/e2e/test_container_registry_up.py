"""`fnplane up --backend container` pulling a function's image from a real registry with authentication
(tests/container_registry.py): with the account's registry credential the deployment says how far the
pull got, becomes ACTIVE and answers; without one, or with a wrong password, it ends in ERROR with the
registry's refusal in its healthInfo. The image is never in podman's store before the pull."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from up_process import UpProcess

from container_registry import ContainerRegistry
from podman import PodmanService

SPEC = {
    "gpu": "L40S",
    "instanceType": "LOCAL.GPU.L40S_1x",
    "minInstances": 1,
    "maxInstances": 1,
    "maxRequestConcurrency": 1,
}


def _platform(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService
) -> tuple[UpProcess, httpx.Client]:
    key = "nvapi-" + secrets.token_urlsafe(32)
    env = {
        **podman_service.env,
        "FNPLANE_ADMIN_KEY": key,
        # the tests' registry is a self-hosted one on 127.0.0.1: the operator recognizes it
        "FNPLANE_CONTROL_RECOGNIZED_REGISTRIES": json.dumps(["127.0.0.1"]),
        # no `docker login` of this machine's user stands in for the account's credential
        "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
    }
    up = start_up(tmp_path / "home", env=env, args=["--backend", "container"])
    up.wait_healthy()
    client = httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return up, client


def _add_credential(client: httpx.Client, registry: ContainerRegistry, secret_value: str) -> None:
    body = {
        "registryHostname": registry.host,
        "secret": {"name": "test-registry", "value": secret_value},
        "artifactTypes": ["CONTAINER"],
    }
    r = client.post("/v2/nvcf/registry-credentials", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["registryCredential"]["registryHostname"] == registry.host


def _deploy(client: httpx.Client, name: str, image: str) -> str:
    """The function created and its deployment asked for; the deployment's path."""
    body = {
        "name": name,
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": image,
        "containerArgs": "python3 /app/echo_server.py",
    }
    r = client.post("/v2/nvcf/functions", json=body)
    assert r.status_code == 200, r.text
    fn = r.json()["function"]
    path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    r = client.post(path, json={"deploymentSpecifications": [SPEC]})
    assert r.status_code == 200, r.text
    return path


def _deployment_until(client: httpx.Client, path: str, done: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        deployment = client.get(path).json()["deployment"]
        if done(deployment):
            return dict(deployment)
        assert time.monotonic() < deadline, f"not there within {timeout_s} s: {deployment}"
        time.sleep(0.1)


def _errors(deployment: dict[str, Any]) -> list[str]:
    return [str(entry["error"]) for entry in deployment.get("healthInfo") or []]


def test_with_the_accounts_credential_the_deployment_says_how_far_the_pull_got_and_serves(
    tmp_path: Path,
    start_up: type[UpProcess],
    podman_service: PodmanService,
    container_registry: ContainerRegistry,
) -> None:
    container_registry.forget_local()
    image = container_registry.image
    up, client = _platform(tmp_path, start_up, podman_service)
    with client:
        _add_credential(client, container_registry, container_registry.secret_value)
        # the registry sends the manifest and the first MiB of the image's own layer, then waits
        container_registry.gate.hold_after(1024 * 1024)
        try:
            path = _deploy(client, "private-echo", image)

            def pulling(deployment: dict[str, Any]) -> bool:
                return any(f"pulling image {image}: " in e and " layers" in e for e in _errors(deployment))

            during = _deployment_until(client, path, pulling, timeout_s=45)
        finally:
            container_registry.gate.release()
        assert during["functionStatus"] == "DEPLOYING", during
        active = _deployment_until(client, path, lambda d: d["functionStatus"] != "DEPLOYING")
        assert active["functionStatus"] == "ACTIVE", active
        # a running instance has nothing more to say
        assert _errors(active) == []
        fid = path.split("/")[5]
        r = client.post(f"/v2/nvcf/pexec/functions/{fid}", json={"private": True})
        assert r.status_code == 200, r.text
        assert r.json()["echo"] == {"private": True}
    assert container_registry.local_images() == [image]
    assert up.stop() == 0


def test_without_a_credential_or_with_a_wrong_password_the_deployment_fails_with_the_registrys_words(
    tmp_path: Path,
    start_up: type[UpProcess],
    podman_service: PodmanService,
    container_registry: ContainerRegistry,
) -> None:
    container_registry.forget_local()
    up, client = _platform(tmp_path, start_up, podman_service)
    with client:
        for name in ("no-credential", "wrong-password"):
            if name == "wrong-password":
                wrong = f"{container_registry.username}:not-{container_registry.password}"
                _add_credential(client, container_registry, base64.b64encode(wrong.encode()).decode())
            path = _deploy(client, name, container_registry.image)
            failed = _deployment_until(client, path, lambda d: d["functionStatus"] != "DEPLOYING")
            assert failed["functionStatus"] == "ERROR", failed
            # (a new instance the platform tries meanwhile may be listed too, saying it pulls)
            prefix = f"image-pull-issues: cannot pull image {container_registry.image}: "
            refusals = [e for e in _errors(failed) if e.startswith(prefix)]
            assert refusals, failed
            assert all("unauthorized" in e or "authentication required" in e for e in refusals), refusals
    # nothing was pulled
    assert container_registry.local_images() == []
    assert up.stop() == 0
