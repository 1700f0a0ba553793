"""Cold start: deploy -> first healthy instance, and request -> first byte from zero, minus own start.

    .venv/bin/python -m bench.cold_start [--runs 5] [--write]

Runs `fnplane up` for real (a child process, fresh home, free ports) and, per run, creates a function
(`examples/echo_server.py`), deploys it with minInstances=1 and polls GET version until it is ACTIVE.
The function's own start time (spawn -> its port accepts connections) is measured separately by running
the same command directly, and subtracted: what is left is the platform's overhead (placement, agent
kick, process spawn, worker start, health polling, report, status reconcile).
The second number is the same for scale-from-zero: an ACTIVE minInstances=0 version is woken
(`POST /v1/fnplane/versions/{vid}/wake`, what the gateway does for a waiting request) -> first RUNNING
instance.
The third goes through the real gateway: a pexec request (`POST /v2/nvcf/pexec/functions/{fid}`) to an
ACTIVE minInstances=0 version with no instance -> the first byte of its response (the response head,
sent when the worker has the function's answer). The gateway sends the wake itself, at once, because no
worker pulls from the version's queue. `--write` replaces the "Cold start" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
COMMAND = f"{sys.executable} examples/echo_server.py"
SPEC = {"gpu": "L40S", "instanceType": "LOCAL.GPU.L40S_1x"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def own_start_time_s() -> float:
    """Spawn the function directly and time until its port accepts a connection."""
    port = free_port()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *COMMAND.split(),
        cwd=REPO,
        env={**os.environ, "PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
                writer.close()
                return time.perf_counter() - started
            except OSError:
                await asyncio.sleep(0.002)
    finally:
        process.terminate()
        await process.wait()


async def start_platform(home: Path, port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "fnplane"),
        "up",
        "--home",
        str(home),
        "--http-port",
        str(port),
        "--grpc-port",
        str(free_port()),
        "--workdir",
        str(REPO),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(timeout=2.0) as client:
        for _ in range(600):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    process.terminate()
    raise RuntimeError("fnplane up did not become healthy")


async def wait_until(check, timeout_s: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if await check():
            return time.perf_counter()
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not met")


async def measure(client: httpx.AsyncClient, *, scale_from_zero: bool) -> float:
    body = {"name": f"cold-{uuid.uuid4().hex[:8]}", "inferenceUrl": "/echo", "containerArgs": COMMAND}
    fn = (await client.post("/v2/nvcf/functions", json=body)).raise_for_status().json()["function"]
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    spec = {**SPEC, "minInstances": 0 if scale_from_zero else 1, "maxInstances": 1}
    deploy_path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"

    async def active() -> bool:
        return (await client.get(path)).json()["function"]["status"] == "ACTIVE"

    async def running() -> bool:
        instances = (await client.get(path)).json()["function"].get("activeInstances") or []
        return any(i.get("instanceStatus") == "RUNNING" for i in instances)

    if scale_from_zero:
        (await client.post(deploy_path, json={"deploymentSpecifications": [spec]})).raise_for_status()
        await wait_until(active)
        started = time.perf_counter()
        (await client.post(f"/v1/fnplane/versions/{fn['versionId']}/wake")).raise_for_status()
        done = await wait_until(running)
    else:
        started = time.perf_counter()
        (await client.post(deploy_path, json={"deploymentSpecifications": [spec]})).raise_for_status()
        done = await wait_until(active)
    (await client.delete(deploy_path)).raise_for_status()
    return done - started


async def first_byte_from_zero(client: httpx.AsyncClient, *, poll_s: int = 60) -> float:
    """pexec to an ACTIVE version with no instance -> first byte of the response, through the gateway."""
    body = {"name": f"cold-{uuid.uuid4().hex[:8]}", "inferenceUrl": "/echo", "containerArgs": COMMAND}
    fn = (await client.post("/v2/nvcf/functions", json=body)).raise_for_status().json()["function"]
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    deploy_path = f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}"
    spec = {**SPEC, "minInstances": 0, "maxInstances": 1}
    (await client.post(deploy_path, json={"deploymentSpecifications": [spec]})).raise_for_status()

    async def idle_and_active() -> bool:
        version = (await client.get(path)).json()["function"]
        return version["status"] == "ACTIVE" and not version.get("activeInstances")

    await wait_until(idle_and_active)

    async def invoke() -> tuple[int, float]:
        async with client.stream(
            "POST",
            f"/v2/nvcf/pexec/functions/{fn['id']}",
            json={"cold": True},
            headers={"NVCF-POLL-SECONDS": str(poll_s)},
            timeout=poll_s + 30,
        ) as response:
            first_byte = time.perf_counter()
            await response.aread()
            return response.status_code, first_byte

    started = time.perf_counter()
    status, first_byte = await invoke()
    (await client.delete(deploy_path)).raise_for_status()
    if status != 200:
        raise RuntimeError(f"pexec to a scaled-to-zero version answered {status}: no wake from the gateway")
    return first_byte - started


def _summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):.0f} ms (min {ms[0]:.0f}, max {ms[-1]:.0f})"


async def main(runs: int, write: bool) -> None:
    own = [await own_start_time_s() for _ in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        up = await start_platform(Path(tmp), port)
        try:
            key = (Path(tmp) / "admin-key").read_text().strip()
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
            ) as c:
                deploy = [await measure(c, scale_from_zero=False) for _ in range(runs)]
                wake = [await measure(c, scale_from_zero=True) for _ in range(runs)]
                request = [await first_byte_from_zero(c) for _ in range(runs)]
        finally:
            up.terminate()
            await asyncio.wait_for(up.wait(), 120)
    own_median = statistics.median(own)
    rows = [
        ("function's own start (spawn -> port open)", _summary(own)),
        ("deploy -> ACTIVE (raw)", _summary(deploy)),
        ("deploy -> ACTIVE minus own start", _summary([d - own_median for d in deploy])),
        ("wake (scaled to zero) -> RUNNING (raw)", _summary(wake)),
        ("wake -> RUNNING minus own start", _summary([w - own_median for w in wake])),
        ("pexec to a scaled-to-zero function -> first byte (raw, the gateway wakes it)", _summary(request)),
        ("pexec from zero -> first byte minus own start", _summary([r - own_median for r in request])),
    ]
    section = "\n".join(
        [
            "## Cold start",
            "",
            f"`python -m bench.cold_start --runs {runs}` on {platform.machine()} / Python "
            f"{platform.python_version()} / {os.cpu_count()} CPUs, `fnplane up` defaults (SQLite, embedded "
            "NATS, agent health polling every 1 s), function `examples/echo_server.py`.",
            "",
            "| measurement | result |",
            "| --- | --- |",
            *[f"| {name} | {value} |" for name, value in rows],
            "",
            "What remains after the function's own start is mostly the worker's start (a Python process "
            "importing aiohttp/pydantic) before its first health check, plus the report -> reconcile -> "
            "status path; a function slower than the worker start is found by the next health poll "
            "(`FNPLANE_AGENT_HEALTH_POLL_INTERVAL_S`, 1 s). Wake includes the placement and the agent kick. "
            "A request to a scaled-to-zero function makes the gateway send the wake at once (no worker "
            "pulls from the version's queue), then waits for the wake path, the worker's pull of the queued "
            "request and the function's answer; the first byte can come before RUNNING shows in the API, "
            "because the worker takes the request as soon as the function is healthy.",
            "",
        ]
    )
    print(section)
    if write:
        doc = REPO / "docs" / "benchmarks.md"
        text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
        pattern = re.compile(r"## Cold start\n.*?(?=\n## |\Z)", re.DOTALL)
        text = (
            pattern.sub(section.rstrip("\n") + "\n", text)
            if pattern.search(text)
            else text.rstrip() + "\n\n" + section
        )
        doc.write_text(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.write))
