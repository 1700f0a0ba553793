"""Load generators: wrk (C, does not bottleneck on Python) where it can express the scenario, asyncio
clients for SSE event rates, 302 follow-ups and a thousand held long polls."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    requests: int = 0  # completed in the measured time (what CPU per request divides by)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(
    url: str, *, connections: int, duration_s: int, headers: dict[str, str], body: bytes, method: str = "POST"
) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        script = Path(tmp) / "s.lua"
        lines = [
            f'wrk.method = "{method}"',
            f'local f = io.open("{body_file}", "rb")',
            'wrk.body = f:read("*all")',
            "f:close()",
        ]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n")
        threads = min(2, connections)
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration_s}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return LoadResult(rps, p50, p99, errors, requests)


async def closed_loop(
    url: str, *, connections: int, duration_s: float, headers: dict[str, str], body: bytes
) -> LoadResult:
    """The asyncio fallback when wrk is missing (it saturates earlier than wrk; said in the report)."""
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration_s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status >= 400:
                        errors += 1
                latencies.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(one() for _ in range(connections)))
    latencies.sort()
    return LoadResult(
        len(latencies) / duration_s,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
        errors,
        len(latencies),
    )


async def sse_rate(url: str, headers: dict[str, str], body: dict, events: int) -> float:
    """Events per second one client receives from one stream (first to last event)."""
    stamps: list[float] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url,
            json=body,
            headers={**headers, "Accept": "text/event-stream"},
            timeout=aiohttp.ClientTimeout(total=120),
        ) as r:
            assert r.status == 200, await r.text()
            buf = b""
            async for chunk in r.content.iter_any():
                buf += chunk
                while b"\n\n" in buf:
                    _, buf = buf.split(b"\n\n", 1)
                    stamps.append(time.perf_counter())
    assert len(stamps) == events, (len(stamps), events)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def large_results(
    url: str, headers: dict[str, str], body: bytes, clients: int, per_client: int, follow: bool
) -> tuple[float, float]:
    """(mean seconds per request incl. the 302 follow-up download, MB/s over the whole run)."""
    times: list[float] = []
    total = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            nonlocal total
            for _ in range(per_client):
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                    data = await r.read()
                    if follow:
                        assert r.status == 302, (r.status, data[:200])
                        async with session.get(r.headers["Location"], headers=headers) as got:
                            data = await got.read()
                            assert got.status == 200
                    else:
                        assert r.status == 200
                total += len(data)
                times.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return statistics.mean(times), total / elapsed / 1e6


async def hold_long_polls(
    url: str, headers: dict[str, str], body: dict, clients: int, sample: callable
) -> tuple[int, float]:  # type: ignore[valid-type]
    """`clients` concurrent pexec calls held open; returns (200 answers, peak of sample() while held)."""
    peak = 0.0
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> int:
            async with session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=300)
            ) as r:
                await r.read()
                return r.status

        tasks = [asyncio.create_task(one()) for _ in range(clients)]
        while not all(t.done() for t in tasks):
            peak = max(peak, sample())
            await asyncio.sleep(0.25)
        ok = sum(1 for t in tasks if not t.exception() and t.result() == 200)
    return ok, peak


def json_body(message: str, repeats: int, **extra: object) -> bytes:
    return json.dumps({"message": message, "repeats": repeats, **extra}).encode()
