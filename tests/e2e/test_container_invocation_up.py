"""Invocation of an image-only container function through `fnplane up --backend container`, from a real
Podman: the image's own CMD (no containerArgs), Host-header direct invocation of any path, an SSE
stream as it is written, and a large result written into NVCF-LARGE-OUTPUT-DIR inside the container
(the request directory mounted at the same path) answered 302 by the gateway."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
from up_process import UpProcess, deploy_function

from podman import PodmanService


def _container_platform(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService
) -> tuple[UpProcess, dict[str, str]]:
    """`fnplane up --backend container` on the test's Podman, and the admin's headers."""
    key = "nvapi-" + secrets.token_urlsafe(32)
    env = {**podman_service.env, "FNPLANE_ADMIN_KEY": key}
    up = start_up(tmp_path / "home", env=env, args=["--backend", "container"])
    up.wait_healthy()
    return up, {"Authorization": f"Bearer {key}"}


def _image_function(name: str, inference_url: str, image: str) -> dict:
    """A function that is only an image (its own CMD), health-checked on the inv function's route."""
    health = {"protocol": "HTTP", "port": 8000, "uri": "/v2/health/ready", "timeout": "PT10S"}
    return {
        "name": name,
        "inferenceUrl": inference_url,
        "inferencePort": 8000,
        "containerImage": image,
        "health": {**health, "expectedStatusCode": 200},
    }


def test_an_image_only_function_serves_direct_sse_and_large_results(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, container_images: dict[str, str]
) -> None:
    up, headers = _container_platform(tmp_path, start_up, podman_service)
    body = _image_function("inv-image", "/files?name=out.bin", container_images["inv"])
    fn = deploy_function(up, headers, body)
    host = {"Host": f"{fn['id']}.invocation.{up.url.split('://', 1)[1]}", **headers}
    with httpx.Client(base_url=up.url, timeout=30) as client:
        seen = client.post("/any/path?x=1", headers=host, content=b"hello")
        assert seen.status_code == 200, seen.text
        assert seen.json()["rawPath"] == "/any/path?x=1" and seen.json()["bodyLength"] == 5
        assert "Authorization" not in seen.json()["headers"]

        with client.stream(
            "GET", "/sse?events=3&interval=0.2", headers={**host, "Accept": "text/event-stream"}
        ) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith("id: ")]
        assert events == ["id: 0", "id: 1", "id: 2"]

        large = client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", headers=headers, json={})
        assert large.status_code == 302, large.text
        assert large.headers["location"]
    mine = podman_service.podman("ps", "-q", "--filter", f"label=fnplane.function={fn['id']}")
    assert mine.stdout.strip(), "the function runs in a container"
    assert up.stop() == 0
    gone = podman_service.podman("ps", "-a", "-q", "--filter", f"label=fnplane.function={fn['id']}")
    assert not gone.stdout.strip()


def test_an_image_running_as_another_user_reads_its_assets_and_writes_its_output(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, container_images: dict[str, str]
) -> None:
    """The worker runs as the agent's user; the image as its own (here uid 1000): the request
    directories mounted into the container are open to it (they lie in the agent's 0700 state dir)."""
    context = tmp_path / "nonroot"
    context.mkdir()
    (context / "Containerfile").write_text(f"FROM {container_images['inv']}\nUSER 1000:1000\n")
    tag = "localhost/fnplane-inv-nonroot:test"
    podman_service.podman("build", "-t", tag, str(context))
    up, headers = _container_platform(tmp_path, start_up, podman_service)

    def function(name: str, inference_url: str) -> dict:
        return deploy_function(up, headers, _image_function(name, inference_url, tag))

    reader, writer = function("nonroot-assets", "/assets"), function("nonroot-files", "/files?name=out.bin")
    with httpx.Client(base_url=up.url, headers=headers, timeout=30) as client:
        asset = client.post(
            "/v2/nvcf/assets", json={"contentType": "application/octet-stream", "description": "a"}
        )
        assert asset.status_code == 200, asset.text
        upload = httpx.put(asset.json()["uploadUrl"], content=b"input bytes", timeout=30)
        assert upload.status_code == 200, upload.text
        asset_id = asset.json()["assetId"]
        seen = client.post(
            f"/v2/nvcf/pexec/functions/{reader['id']}",
            json={},
            headers={"NVCF-INPUT-ASSET-REFERENCES": asset_id},
        )
        assert seen.status_code == 200, seen.text
        assert list(seen.json()["assets"]) == [asset_id]
        # the function (uid 1000) writes an extra file: the large-result path, a 302 to its zip
        wrote = client.post(f"/v2/nvcf/pexec/functions/{writer['id']}", json={})
        assert wrote.status_code == 302, wrote.text
    assert up.stop() == 0
    podman_service.podman("rmi", "-f", tag, check=False)
