"""`fnplane up --backend container` giving each instance its own GPU as a CDI device, on a real Podman:
a configured inventory of two GPUs said to be real, CDI requests, and a fake CDI spec whose devices
`nvidia.com/gpu=0` and `=1` are /dev/null seen as /dev/nvidia-fake0 and /dev/nvidia-fake1 inside.

Podman 4.3 reads CDI specs only from /etc/cdi and /var/run/cdi (no `cdi_spec_dirs` yet): the spec is a
file of this test's own in /var/run/cdi, removed at the end (with the directory, if the test made it).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from up_process import UpProcess, deploy_function

from podman import PodmanService

CDI_DIR = Path("/var/run/cdi")
INVENTORY = [
    {
        "gpu": "L40S",
        "capacity": 2,
        "instanceTypes": [{"name": "LOCAL.GPU.L40S_1x", "default": True, "gpuCount": 1}],
    }
]


@pytest.fixture
def fake_cdi_spec() -> Iterator[Path]:
    made = not CDI_DIR.exists()
    CDI_DIR.mkdir(parents=True, exist_ok=True)
    spec = CDI_DIR / f"fnplane-test-{uuid.uuid4().hex[:8]}.json"
    devices = [
        {
            "name": str(index),
            "containerEdits": {
                "deviceNodes": [{"path": f"/dev/nvidia-fake{index}", "hostPath": "/dev/null"}]
            },
        }
        for index in (0, 1)
    ]
    spec.write_text(json.dumps({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices}))
    try:
        yield spec
    finally:
        spec.unlink(missing_ok=True)
        if made:
            CDI_DIR.rmdir()


@pytest.mark.xdist_group("cdi")  # one spec of nvidia.com/gpu at a time: two would conflict
def test_each_instance_sees_the_gpu_the_agent_gave_it_as_a_cdi_device(
    tmp_path: Path, start_up: type[UpProcess], podman_service: PodmanService, fake_cdi_spec: Path
) -> None:
    key = "nvapi-" + secrets.token_urlsafe(32)
    env = {
        **podman_service.env,
        "FNPLANE_ADMIN_KEY": key,
        "FNPLANE_AGENT_INVENTORY": json.dumps(INVENTORY),
        "FNPLANE_AGENT_INVENTORY_GPUS_REAL": "true",
        "FNPLANE_AGENT_CONTAINER_GPU_REQUEST": "cdi",
    }
    up = start_up(tmp_path / "home", env=env, args=["--backend", "container"])
    up.wait_healthy()
    headers = {"Authorization": f"Bearer {key}"}
    seen = {}
    for name in ("first", "second"):
        body = {
            "name": f"gpu-{name}",
            "inferenceUrl": "/echo",
            "inferencePort": 8000,
            "containerImage": "localhost/fnplane-echo:test",
            "containerArgs": "python3 /app/echo_server.py",
        }
        fn = deploy_function(up, headers, body)
        r = httpx.post(f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}", json={}, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        found = podman_service.podman(
            "ps", "--filter", f"label=fnplane.function={fn['id']}", "--format", "{{.Names}}"
        )
        [container] = found.stdout.split()
        listing = podman_service.podman("exec", container, "sh", "-c", "ls /dev | grep nvidia || true")
        seen[name] = listing.stdout.split()
    # one GPU each, and not the same one
    assert sorted(seen.values()) == [["nvidia-fake0"], ["nvidia-fake1"]], seen
    assert up.stop() == 0
