"""`fnplane up --demo`: the echo example deployed once the platform is up, and the commands to try it.

The demo is a client of the platform like any other: it talks to the platform's own HTTP API (the
loopback URL, with the admin key), never to its tables. It

1. waits for `GET /health` (the agent must have registered its cluster before anything deploys);
2. reuses the function named `DEMO_NAME` if the home already has one (a second `--demo` start on the
   same home registers nothing): a version with a deployment is waited for, an undeployed one is
   deployed again; else registers examples/echo_server.py by its containerArgs, run in the working
   directory (`--workdir`, default the directory `fnplane up` started in, which `make run` makes the
   repository);
3. deploys it on the local pool's first instance type (LOCAL.GPU.L40S_1x, one instance) and waits until
   it is ACTIVE;
4. prints the `fnplane` CLI lines and the curl lines (pexec and Host-header invocation) to try.

A demo that cannot be set up is reported and the platform runs on without it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEMO_NAME = "fnplane-demo-echo"
# relative to the working directory the agent runs containerArgs in
ECHO_SCRIPT = "examples/echo_server.py"
DEMO_GPU = "L40S"
DEMO_INSTANCE_TYPE = "LOCAL.GPU.L40S_1x"
# statuses of a version that has a deployment (INACTIVE: none)
_DEPLOYED = {"ACTIVE", "DEPLOYING", "DEGRADING", "DEGRADED", "ERROR"}
_POLL_INTERVAL_S = 0.5
_HTTP_TIMEOUT_S = 10.0


class DemoError(Exception):
    """The demo could not be set up (the platform itself is unaffected)."""


@dataclass(frozen=True)
class DemoFunction:
    function_id: str
    version_id: str
    reused: bool


def registration(workdir: Path) -> dict[str, Any]:
    """The demo function's registration body, as the README tour registers the echo example."""
    if not (workdir / ECHO_SCRIPT).is_file():
        raise DemoError(
            f"--demo runs {ECHO_SCRIPT} in the working directory, and {workdir} has none: start "
            "`fnplane up --demo` in the fnplane repository (`make run` does), or pass --workdir"
        )
    return {
        "name": DEMO_NAME,
        "description": "the echo example, deployed by `fnplane up --demo`",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerImage": "local/echo",
        "containerArgs": f"python3 {ECHO_SCRIPT}",
    }


async def deploy_demo(
    client: httpx.AsyncClient, workdir: Path, *, timeout_s: float, poll_interval_s: float = _POLL_INTERVAL_S
) -> DemoFunction:
    """The demo function, registered (unless the platform has it) and deployed, once ACTIVE.

    `client` has the platform's base URL and an admin bearer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await _wait_healthy(client, deadline, poll_interval_s)
    found = await _existing(client)
    if found is None:
        created = await _call(client, "POST", "/v2/nvcf/functions", json=registration(workdir))
        function = created["function"]
        demo, status = DemoFunction(function["id"], function["versionId"], reused=False), "INACTIVE"
    else:
        demo, status = found
    if status not in _DEPLOYED:
        spec = {"gpu": DEMO_GPU, "instanceType": DEMO_INSTANCE_TYPE, "minInstances": 1, "maxInstances": 1}
        path = f"/v2/nvcf/deployments/functions/{demo.function_id}/versions/{demo.version_id}"
        await _call(client, "POST", path, json={"deploymentSpecifications": [spec]})
    await _wait_active(client, demo, deadline, poll_interval_s)
    return demo


async def _existing(client: httpx.AsyncClient) -> tuple[DemoFunction, str] | None:
    """The demo function of an earlier `--demo` start: a deployed version first, else the newest."""
    listed = await _call(client, "GET", "/v2/nvcf/functions")
    versions = [f for f in listed["functions"] if f["name"] == DEMO_NAME]
    if not versions:
        return None
    versions.sort(key=lambda f: (f["status"] in _DEPLOYED, f["createdAt"]), reverse=True)
    chosen = versions[0]
    return DemoFunction(chosen["id"], chosen["versionId"], reused=True), chosen["status"]


async def _wait_healthy(client: httpx.AsyncClient, deadline: float, poll_interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    last = ""
    while loop.time() < deadline:
        try:
            response = await client.get("/health")
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as error:
            last = repr(error)
        await asyncio.sleep(poll_interval_s)
    raise DemoError(f"the platform did not become healthy: {last}")


async def _wait_active(
    client: httpx.AsyncClient, demo: DemoFunction, deadline: float, poll_interval_s: float
) -> None:
    loop = asyncio.get_running_loop()
    path = f"/v2/nvcf/functions/{demo.function_id}/versions/{demo.version_id}"
    status = ""
    while loop.time() < deadline:
        status = (await _call(client, "GET", path))["function"]["status"]
        if status == "ACTIVE":
            return
        await asyncio.sleep(poll_interval_s)
    raise DemoError(
        f"the demo function {demo.function_id} is still {status}, not ACTIVE (GET {path} shows its instances)"
    )


async def _call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        raise DemoError(f"{method} {path} failed: {error!r}") from error
    if response.status_code != 200:
        raise DemoError(f"{method} {path} answered {response.status_code}: {response.text}")
    return dict(response.json())


def demo_commands(demo: DemoFunction, url: str, key_path: Path, cli_dir: Path | None = None) -> str:
    """What `fnplane up --demo` prints: the demo function and the commands to try it, CLI and curl.

    `cli_dir`: where the `fnplane` executable is, when it is not on the PATH (a .venv not activated)."""
    fid, vid = demo.function_id, demo.version_id
    key = f"$(cat {shlex.quote(str(key_path))})"
    state = "reused from an earlier --demo start" if demo.reused else "registered"
    data = '\'{"hello": "world"}\''
    direct = '\'{"hello": "direct"}\''
    auth = '-H "Authorization: Bearer $KEY"'
    json_type = "-H 'Content-Type: application/json'"
    lines = [
        f"Demo: the echo example ({ECHO_SCRIPT}) is ACTIVE as function {DEMO_NAME} ({state}). Try it:",
        f'  export FNPLANE={url} KEY="{key}" FID={fid} VID={vid}',
        "with the fnplane CLI:",
        *([f"  export PATH={shlex.quote(str(cli_dir))}:$PATH"] if cli_dir is not None else []),
        '  fnplane login --url $FNPLANE --api-key "$KEY"',
        "  fnplane function list",
        f"  fnplane invoke $FID --data {data}",
        f"  fnplane invoke $FID --direct /any/path --method POST --data {direct}",
        "  fnplane deploy status $FID $VID",
        "or with curl (pexec calls its inferenceUrl /echo; the Host header passes any method and path):",
        f"  curl -s $FNPLANE/v2/nvcf/pexec/functions/$FID {auth} {json_type} -d {data}",
        f'  curl -s $FNPLANE/any/path -H "Host: $FID.invocation.localhost" {auth} {json_type} -d {direct}',
    ]
    return "\n".join(lines)


async def run_demo(
    api_url: str,
    admin_key: str,
    workdir: Path,
    *,
    public_url: str,
    key_path: Path,
    out: Callable[[str], None],
    timeout_s: float,
    verify: bool = True,
) -> DemoFunction | None:
    """Set up the demo and print how to try it; a failure is logged, never raised."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    try:
        async with httpx.AsyncClient(
            base_url=api_url, headers=headers, timeout=_HTTP_TIMEOUT_S, verify=verify
        ) as client:
            demo = await deploy_demo(client, workdir, timeout_s=timeout_s)
    except DemoError as error:
        logger.error("fnplane up --demo: %s", error)
        return None
    except (KeyError, TypeError, ValueError) as error:  # an answer not of the API's shape
        logger.error("fnplane up --demo: unexpected answer from the API: %r", error)
        return None
    out(demo_commands(demo, public_url, key_path, _cli_dir()))
    return demo


def _cli_dir() -> Path | None:
    """The directory of this installation's `fnplane`, unless the PATH already finds that one."""
    ours = Path(sys.executable).parent / "fnplane"
    found = shutil.which("fnplane")
    if found is not None and Path(found).resolve() == ours.resolve():
        return None
    return ours.parent
