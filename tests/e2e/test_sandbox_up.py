"""The function sandbox, black-box through a real `fnplane up` (bubblewrap on this machine).

A deployed probe function (sandbox_probe.py) is handed, in its request body, every file under DIR and
the pid of every platform process (fnplane up, nats-server, the workers, the sandboxes' bwrap), and
tries to read them. DIR lies inside the working directory, the worst case: it must still be hidden.
Two instances run, so each probe also looks for the other instance's request directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import up_process
from up_process import UpProcess

PROBE = Path(__file__).with_name("sandbox_probe.py")
SPEC = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x", "minInstances": 2, "maxInstances": 2}
# what DESIGN.md section 3 gives a function, and nothing else (PWD: bwrap's --chdir sets it, as a shell)
ALLOWED = {
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "PWD",
    "INFERENCE_PORT",
    "PORT",
    "HEALTH_PORT",
    "INSTANCE_ID",
    "MAX_REQUEST_CONCURRENCY",
    "MODEL",
}
ALLOWED_PREFIXES = ("NVCF_", "INFERENCE_HEALTH_")


def _deploy_probe(client: httpx.Client) -> dict[str, Any]:
    r = client.post(
        "/v2/nvcf/functions",
        json={
            "name": "probe",
            "inferenceUrl": "/probe",
            "inferencePort": 8000,
            "containerImage": "example/probe:1",
            "containerArgs": f"{sys.executable} sandbox_probe.py",
            "containerEnvironment": [{"key": "MODEL", "value": "tiny"}],
        },
    )
    assert r.status_code == 200, r.text
    fn = r.json()["function"]
    r = client.post(
        f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}",
        json={"deploymentSpecifications": [SPEC]},
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        version = client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}").json()["function"]
        if version["status"] == "ACTIVE" and len(version.get("activeInstances") or []) == 2:
            return fn
        assert version["status"] != "ERROR", version
        time.sleep(0.2)
    pytest.fail("the probe function never had two running instances")


def _platform_files(home: Path) -> list[str]:
    return [str(Path(root) / name) for root, _, names in os.walk(home) for name in names]


def test_a_sandboxed_function_cannot_reach_the_platform(tmp_path: Path, start_up: type[UpProcess]) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copy(PROBE, workdir / "sandbox_probe.py")
    home = workdir / "dir"  # DIR inside the working directory
    key = "nvapi-" + secrets.token_urlsafe(32)
    # nothing shared read-write (the harness shares the test's directory for other tests' markers)
    env = {"FNPLANE_ADMIN_KEY": key, "FNPLANE_AGENT_SANDBOX_SHARED_PATHS": "[]"}
    up = start_up(home, env=env, args=["--workdir", str(workdir)])
    health = up.wait_healthy()
    assert health["isolation"] == "bubblewrap"

    with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        fn = _deploy_probe(client)
        files = _platform_files(home)
        # the secrets are there, on the host
        assert {"admin-key", "key-hash-secret"} <= {Path(f).name for f in files}
        assert any(f.endswith(".db") or "sqlite" in f for f in files) and any("/nats" in f for f in files)
        pids = [up.process.pid, *(p.pid for p in up.descendants())]
        request_roots = [str(p) for p in (home / "agents" / "local" / "requests").iterdir()]
        assert len(request_roots) == 2
        answers: dict[str, dict[str, Any]] = {}
        for _ in range(40):
            r = client.post(
                f"/v2/nvcf/pexec/functions/{fn['id']}",
                json={"files": files, "pids": pids, "dirs": request_roots},
            )
            assert r.status_code == 200, r.text
            report = r.json()
            answers[report["outputDir"]["path"].rsplit("/", 2)[0]] = report
            if len(answers) == 2:
                break
        assert sorted(answers) == sorted(request_roots), "both instances answer"

    for own_root, report in answers.items():
        # every file under DIR and every platform process's environment and memory: out of reach
        assert {path: o for path, o in report["files"].items() if o == "read"} == {}
        assert {pid: o for pid, o in report["environs"].items() if o == "read"} == {}
        assert {pid: o for pid, o in report["mems"].items() if o == "read"} == {}
        # its own PID namespace: a handful of processes, none of the platform's
        assert len(report["pids"]) <= 4 and not set(report["pids"]) & set(pids)
        # its own request directory only: the other instance's is not even there
        assert report["dirs"].pop(own_root) == "listed"
        assert set(report["dirs"].values()) == {"FileNotFoundError"}
        assert report["outputDir"]["writable"] is True
        # exactly the documented environment: no FNPLANE_* variable, no value of the platform's
        env = report["env"]
        assert not [name for name in env if name.startswith("FNPLANE_")]
        assert {n for n in env if not n.startswith(ALLOWED_PREFIXES)} <= ALLOWED, sorted(env)
        assert key not in "".join(env.values())
        assert env["MODEL"] == "tiny" and env["NVCF_FUNCTION_ID"] == fn["id"]
        # a private HOME and TMPDIR: empty at first, writable, not the platform's
        # (a bound directory under /tmp, like this test's or a checkout's, brings its empty parent
        # directories along)
        bound = (workdir, up_process.REPO)
        mountpoints = {p.parts[2] for p in bound if len(p.parts) > 2 and p.parts[1] == "tmp"}
        assert report["home"]["before"] == [] and report["home"]["write"] == "written", report["home"]
        assert set(report["tmp"]["before"]) <= mountpoints and report["tmp"]["write"] == "written"
        assert env["HOME"] != os.environ.get("HOME") and not Path(env["HOME"], "sandbox-probe-write").exists()
        # the working directory: readable, not writable
        assert report["workdir"]["read"] == "read"
        assert report["workdir"]["write"] != "written"
        assert report["umount"] != 0  # no capability to take the mounts apart
    assert not (workdir / "sandbox-probe-write").exists()


def test_without_a_sandbox_the_platform_says_so(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home", env={"FNPLANE_AGENT_SANDBOX": "none"})
    assert up.wait_healthy()["isolation"] == "none"
    assert "single trusted user" in up.stderr
