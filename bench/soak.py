"""`make soak`: a steady open-loop load on a real `fnplane up` for a long time, and whether anything leaks.

    python -m bench.soak --minutes 30 --rate 30      # what `make soak` runs (SOAK_MINUTES, SOAK_RATE)

The platform is bench's (`bench.platform.Platform`: its own home in a temp dir, embedded NATS and
SQLite, ports of its own), with two example functions deployed: `examples/inv_function.py` (`/supreme`,
NVCF's load_tester_supreme echo) and `examples/sse_tokens.py` (an SSE stream of tokens). Requests are
scheduled at fixed intervals (1 / rate s apart, whatever the answers do: open loop), in a fixed mix
(`MIX`): pexec of the echo, a direct Host-header call of the echo, and an SSE stream through pexec
(`Accept: text/event-stream`, every token and the `[DONE]` must arrive). Latency runs from the time a
request was scheduled, so a stall of the client or the platform counts against it.

Every minute (`SAMPLE_S`) the RSS and the open-file count of every process of the platform are read with
psutil: `fnplane up` (control plane, gateway, agent), `nats-server`, each worker and each function
process. The verdict (`verdict`): success above 99.9 %, every process's RSS and open files flat by
`flat` (after the warm-up, the last window's mean within `RSS_TOLERANCE` / `FDS_TOLERANCE` of the first
window's), and the same processes at the end as at the start (none restarted). The section "## Soak" of
docs/reliability.md is written by the run (the rest of the file is kept). Everything the run started is
stopped at the end and its home removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.cpu import COMPONENTS, CpuMeter
from bench.platform import REPO, Platform
from bench.run import machine, now

DOC = REPO / "docs" / "reliability.md"
SSE_FUNCTION = REPO / "examples" / "sse_tokens.py"
PEXEC, DIRECT, SSE = "pexec", "direct", "sse"
MIX = (PEXEC, DIRECT, PEXEC, DIRECT, SSE)  # 40 % pexec, 40 % direct, 20 % SSE
SSE_TOKENS = "soak streams eight tokens to every client here"
SSE_INTERVAL_S = 0.02
SAMPLE_S = 60.0
REQUEST_TIMEOUT_S = 60.0
SUCCESS_TARGET = 0.999
P95_TARGET_S = 5.0
WARMUP_SAMPLES = 5  # minutes left out before the flatness windows (fewer in a short run)
WINDOW_SAMPLES = 10  # minutes in each flatness window (fewer in a short run)
RSS_TOLERANCE = (0.10, 5.0)  # the last window's RSS mean may exceed the first's by 10 % or 5 MiB
FDS_TOLERANCE = 5  # open files: the last window's mean may exceed the first's by 5
MiB = 1024 * 1024
DOC_WIDTH = 105


# ---- pure parts: percentiles, flatness, summaries, the verdict and the section ----


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def windows(n: int) -> tuple[int, int]:
    """(warm-up samples left out, samples per window) for a series of n samples: the defaults, shrunk
    for a short run so that two windows of at least one sample remain after the warm-up."""
    warmup = min(WARMUP_SAMPLES, n // 3)
    window = max(1, min(WINDOW_SAMPLES, (n - warmup) // 2))
    return warmup, window


@dataclass(frozen=True)
class Flatness:
    first: float  # mean of the first window after the warm-up
    last: float  # mean of the last window
    allowed: float  # the largest `last` that is still flat
    flat: bool


def flat(series: list[float], relative: float, absolute: float) -> Flatness:
    """Whether a per-minute series stays flat: after the warm-up (`windows`), the mean of the last
    window is at most the first window's plus max(relative x first, absolute). Only growth counts (a
    process that gives memory back is not leaking); a series too short for two windows is flat."""
    warmup, window = windows(len(series))
    steady = series[warmup:]
    if len(steady) < 2:
        value = steady[-1] if steady else 0.0
        return Flatness(value, value, value, True)
    first = statistics.fmean(steady[:window])
    last = statistics.fmean(steady[-window:])
    allowed = first + max(relative * first, absolute)
    return Flatness(first, last, allowed, last <= allowed)


@dataclass
class Tally:
    """What the load did: requests sent, answered 2xx, errors by kind and latencies, per request kind."""

    sent: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    latencies_s: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, latency_s: float, error: str | None) -> None:
        self.sent[kind] += 1
        if error is None:
            self.ok[kind] += 1
            self.latencies_s.setdefault(kind, []).append(latency_s)
        else:
            self.errors.setdefault(kind, Counter())[error] += 1

    def success(self) -> float:
        total = sum(self.sent.values())
        return sum(self.ok.values()) / total if total else 0.0

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies_s.values() for v in values]


# a process's per-minute series: label -> [(minute, RSS MiB, open files)]
Series = dict[str, list[tuple[float, float, int]]]


@dataclass(frozen=True)
class ProcessSummary:
    label: str
    samples: int
    rss: tuple[float, float, float]  # first, last, max (MiB)
    fds: tuple[int, int, int]
    rss_flat: Flatness
    fds_flat: Flatness


def order(label: str) -> tuple[int, int, str]:
    """Table order: `fnplane up`, `nats-server`, then workers and functions by pid (their start)."""
    rank = {"fnplane up": 0, "nats-server": 1}.get(label, 2)
    pid = re.search(r"pid (\d+)", label)
    return rank, int(pid.group(1)) if pid else 0, label


def summarize(series: Series) -> list[ProcessSummary]:
    out = []
    for label, points in sorted(series.items(), key=lambda item: order(item[0])):
        rss = [p[1] for p in points]
        fds = [p[2] for p in points]
        out.append(
            ProcessSummary(
                label,
                len(points),
                (rss[0], rss[-1], max(rss)),
                (fds[0], fds[-1], max(fds)),
                flat(rss, *RSS_TOLERANCE),
                flat([float(f) for f in fds], 0.0, FDS_TOLERANCE),
            )
        )
    return out


def verdict(tally: Tally, processes: list[ProcessSummary], total_samples: int) -> dict[str, bool]:
    """Each pass criterion and whether it held."""
    return {
        f"success > {SUCCESS_TARGET:.1%}": tally.success() > SUCCESS_TARGET,
        f"p95 < {P95_TARGET_S:.0f} s (every kind)": all(
            percentile(v, 95) < P95_TARGET_S for v in tally.latencies_s.values()
        ),
        "RSS flat (every process)": all(p.rss_flat.flat for p in processes),
        "open files flat (every process)": all(p.fds_flat.flat for p in processes),
        "no process restarted or added": all(p.samples == total_samples for p in processes),
    }


def section(
    tally: Tally,
    processes: list[ProcessSummary],
    passed: dict[str, bool],
    run: dict[str, Any],
) -> str:
    """The "## Soak" section of docs/reliability.md."""
    lines = [
        "## Soak",
        "",
        "`make soak` (`bench/soak.py`; `SOAK_MINUTES`, `SOAK_RATE`) holds an open-loop steady load on a "
        "real `fnplane up` (embedded NATS and SQLite, its home in a temp dir) and reads the RSS and open "
        "files of every platform process every minute. Requests are scheduled 1 / rate apart whatever the "
        "answers do, in the mix pexec / direct / pexec / direct / SSE: pexec "
        "(`POST /v2/nvcf/pexec/functions/{id}`) and direct Host-header calls of `examples/inv_function.py` "
        "`/supreme`, and SSE streams of `examples/sse_tokens.py` through pexec (8 tokens 20 ms apart; every "
        "token and `[DONE]` must arrive). Client: httpx. Latency is from the scheduled time to the last "
        "byte. NVCF's soak SLO (reference/invocation.md 8) is p95 under 5 s and more than 99.9 % success "
        "for 48 h at 4 x 125 TPS; this is the same test shape scaled to one 2-core host.",
        "",
        f"Run {run['date']} UTC on commit {run['commit']}: **{run['minutes']} minutes at {run['rate']:g} "
        "requests/s** "
        f"(achieved {run['achieved_rate']:.2f}/s; the scheduler was at most {run['max_lag_ms']:.0f} ms "
        "late). "
        f"Machine: {run['machine']}. Load average over the run: mean {run['load_mean']:.2f}, "
        f"max {run['load_max']:.2f}.",
    ]
    if run.get("note"):
        lines += ["", run["note"]]
    lines += [
        "",
        "| kind | sent | 2xx | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind in [*dict.fromkeys(MIX), "all"]:
        if kind == "all":
            sent, ok, lat = sum(tally.sent.values()), sum(tally.ok.values()), tally.all_latencies()
            errors: Counter[str] = sum(tally.errors.values(), Counter())
        else:
            sent, ok, lat = tally.sent[kind], tally.ok[kind], tally.latencies_s.get(kind, [])
            errors = tally.errors.get(kind, Counter())
        err = ", ".join(f"{name}: {n}" for name, n in errors.most_common()) or "0"
        cells = " | ".join(f"{percentile(lat, q) * 1000:,.0f}" for q in (50, 95, 99, 100))
        lines.append(f"| {kind} | {sent:,} | {ok:,} | {err} | {cells} |")
    lines += [
        "",
        f"Success: **{tally.success():.4%}**. Platform CPU over the run, us per request: {run['cpu']}.",
        "",
        f"Per process, {run['samples']} samples a minute apart (the first at the start of the load). Flat: "
        f"the first {run['warmup']} samples are warm-up; the mean of the last {run['window']} samples is at "
        f"most the mean of the first {run['window']} after the warm-up plus max({RSS_TOLERANCE[0]:.0%}, "
        f"{RSS_TOLERANCE[1]:g} MiB) for RSS, plus {FDS_TOLERANCE} for open files.",
        "",
        "| process | RSS MiB first / last / max | RSS window means first → last (allowed) | open files "
        "first / last / max | open-file window means first → last (allowed) | flat |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in processes:
        r, f = p.rss_flat, p.fds_flat
        ok_text = "yes" if r.flat and f.flat else "**no**"
        lines.append(
            f"| {p.label} | {p.rss[0]:.1f} / {p.rss[1]:.1f} / {p.rss[2]:.1f} | {r.first:.1f} → {r.last:.1f} "
            f"({r.allowed:.1f}) | {p.fds[0]} / {p.fds[1]} / {p.fds[2]} | {f.first:.1f} → {f.last:.1f} "
            f"({f.allowed:.1f}) | {ok_text} |"
        )
    lines += ["", "Verdict: **" + ("PASS" if all(passed.values()) else "FAIL") + "**", ""]
    lines += [f"* {name}: {'met' if ok else '**not met**'}" for name, ok in passed.items()]
    lines += ["", f"Leftovers after the stop: {run['leftovers']}."]
    return wrap_prose("\n".join(lines) + "\n")


def wrap_prose(text: str, width: int = DOC_WIDTH) -> str:
    """Paragraph lines wrapped to `width`, as the rest of docs/ is; tables and list items left alone."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith(("|", "*", "#")):
            out.append(line)
        else:
            out += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)


def replace_section(doc: str, text: str) -> str:
    """`doc` with its "## Soak" section (up to the next "## " heading) replaced by `text`, or with
    `text` appended when it has none."""
    pattern = r"^## Soak\n.*?(?=^## |\Z)"
    if re.search(pattern, doc, flags=re.S | re.M):
        return re.sub(pattern, lambda _: text + "\n", doc, count=1, flags=re.S | re.M).rstrip() + "\n"
    return doc.rstrip() + "\n\n" + text


# ---- I/O: the platform's processes, the load, the run ----


def label_of(process: psutil.Process, root_pid: int) -> str:
    if process.pid == root_pid:
        return "fnplane up"
    cmdline = process.cmdline()
    if process.name().startswith("nats-server"):
        return "nats-server"
    if "fnplane.compute.worker" in cmdline:
        return f"worker (pid {process.pid})"
    # a sandboxed function is bwrap -> bwrap -> python, each with the script on its command line
    script = next((Path(a).name for a in cmdline if a.endswith(".py")), "")
    return f"function {script} ({process.name()}, pid {process.pid})"


def sample(root: psutil.Process) -> dict[str, tuple[float, int]]:
    """label -> (RSS MiB, open files) of `fnplane up` and every process under it."""
    out: dict[str, tuple[float, int]] = {}
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for process in tree:
        try:
            with process.oneshot():
                out[label_of(process, root.pid)] = (process.memory_info().rss / MiB, process.num_fds())
        except psutil.Error:
            continue
    return out


class Load:
    """The open-loop load: one request every 1 / rate s, in the order of `MIX`."""

    def __init__(self, p: Platform, echo: dict[str, Any], sse: dict[str, Any]) -> None:
        self.p = p
        self.echo = echo
        self.sse = sse
        self.tally = Tally()
        self.max_lag_s = 0.0
        self.body = {"message": "soak", "repeats": 1}

    async def run(self, client: httpx.AsyncClient, rate: float, duration_s: float) -> float:
        """Send for `duration_s`, then wait for the answers; the achieved send rate."""
        loop = asyncio.get_running_loop()
        tasks: dict[asyncio.Task[None], str] = {}  # in flight -> its kind
        start = loop.time()
        i = 0
        while i / rate < duration_s:
            at = start + i / rate
            if (delay := at - loop.time()) > 0:
                await asyncio.sleep(delay)
            self.max_lag_s = max(self.max_lag_s, loop.time() - at)
            kind = MIX[i % len(MIX)]
            task = asyncio.create_task(self.one(client, kind, at))
            tasks[task] = kind
            task.add_done_callback(lambda done: tasks.pop(done, None))
            i += 1
        achieved = i / (loop.time() - start)
        if tasks:
            await asyncio.wait(set(tasks), timeout=REQUEST_TIMEOUT_S * 2)
        for task, kind in list(tasks.items()):  # still unanswered: counted, not lost
            task.cancel()
            self.tally.add(kind, loop.time() - start, "unanswered")
        return achieved

    async def one(self, client: httpx.AsyncClient, kind: str, at: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            if kind == PEXEC:
                error = await self.pexec(client)
            elif kind == DIRECT:
                r = await client.post(
                    f"{self.p.url}/supreme",
                    json=self.body,
                    headers={**self.p.auth, "Host": self.p.host(self.echo)},
                )
                error = None if r.status_code == 200 else f"http {r.status_code}"
            else:
                error = await self.stream(client)
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as e:
            error = type(e).__name__
        except (ValueError, KeyError):  # a body or header that is not what the call answers
            error = "malformed answer"
        self.tally.add(kind, loop.time() - at, error)

    async def pexec(self, client: httpx.AsyncClient) -> str | None:
        headers = {**self.p.auth, "NVCF-POLL-SECONDS": "30"}
        r = await client.post(
            f"{self.p.url}/v2/nvcf/pexec/functions/{self.echo['id']}", json=self.body, headers=headers
        )
        while r.status_code == 202:  # still running after the poll: fetch its result as NVCF clients do
            r = await client.get(
                f"{self.p.url}/v2/nvcf/pexec/status/{r.headers['NVCF-REQID']}", headers=headers
            )
        return None if r.status_code == 200 else f"http {r.status_code}"

    async def stream(self, client: httpx.AsyncClient) -> str | None:
        headers = {**self.p.auth, "Accept": "text/event-stream"}
        body = {"prompt": SSE_TOKENS, "interval_s": SSE_INTERVAL_S}
        url = f"{self.p.url}/v2/nvcf/pexec/functions/{self.sse['id']}"
        async with client.stream("POST", url, json=body, headers=headers) as r:
            if r.status_code != 200:
                return f"http {r.status_code}"
            data = [line[6:] async for line in r.aiter_lines() if line.startswith("data: ")]
        tokens = [json.loads(d)["token"] for d in data[:-1]]
        if data[-1:] != ["[DONE]"] or tokens != SSE_TOKENS.split():
            return "sse incomplete"
        return None


async def soak(p: Platform, minutes: float, rate: float) -> tuple[Load, Series, dict[str, Any]]:
    assert p.proc is not None
    echo = p.deploy("soak-echo", "/supreme", concurrency=64)
    sse = p.deploy(
        "soak-sse",
        "/generate",
        concurrency=16,
        function={"containerArgs": f"{sys.executable} {SSE_FUNCTION}"},
    )
    root = psutil.Process(p.proc.pid)
    meter = CpuMeter(p.proc.pid)
    load = Load(p, echo, sse)
    series: Series = {}
    loads: list[float] = []
    duration_s = minutes * 60

    started = time.monotonic()

    async def read() -> None:
        minute = (time.monotonic() - started) / 60
        for label, (rss, fds) in (await asyncio.to_thread(sample, root)).items():
            series.setdefault(label, []).append((minute, rss, fds))
        loads.append(os.getloadavg()[0])
        print(
            f"[soak] minute {minute:.1f}: {load.tally.sent.total()} sent, {load.tally.ok.total()} ok",
            flush=True,
        )

    async def sampler() -> None:
        # minutes 0 .. N-1 here; minute N is read once the load has ended
        for k in range(int(-(-duration_s // SAMPLE_S))):
            await asyncio.sleep(max(0.0, started + k * SAMPLE_S - time.monotonic()))
            await read()

    before = meter.read()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        sampling = asyncio.create_task(sampler())
        try:
            achieved = await load.run(client, rate, duration_s)
        finally:
            sampling.cancel()
        await read()
    cpu = meter.since(before).per_request_us(load.tally.sent.total())
    run = {
        "achieved_rate": achieved,
        "max_lag_ms": load.max_lag_s * 1000,
        "load_mean": statistics.fmean(loads) if loads else 0.0,
        "load_max": max(loads, default=0.0),
        "cpu": ", ".join(f"{c} {cpu[c]:,.0f}" for c in (*COMPONENTS, "platform")),
        "processes": [root, *root.children(recursive=True)],
    }
    return load, series, run


def leftovers(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of the run's processes still alive (a pid reused by another process does not count)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.soak")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=30.0, help="requests per second, all kinds together")
    ap.add_argument("--note", default="", help="a sentence for the doc (e.g. what else ran on the machine)")
    ap.add_argument(
        "--no-doc", action="store_true", help="print the section, leave docs/reliability.md alone"
    )
    args = ap.parse_args()
    p = Platform()
    started = now()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    try:
        p.start()
        load, series, run = asyncio.run(soak(p, args.minutes, args.rate))
    finally:
        p.stop()
    left = [f"pid {q.pid} ({q.name()}, killed)" for q in leftovers(run["processes"])]
    for process in leftovers(run["processes"]):  # ours: the tree of the `fnplane up` this run started
        process.kill()
    home = "removed" if not p.home.exists() else f"NOT removed ({p.home})"
    run |= {
        "date": started,
        "commit": commit or "unknown",
        "minutes": f"{args.minutes:g}",
        "rate": args.rate,
        "machine": machine(),
        "note": args.note,
        "leftovers": (", ".join(left) if left else "none (every process of the platform had exited)")
        + f"; the platform's home: {home}",
    }
    total_samples = max((len(points) for points in series.values()), default=0)
    run["samples"] = total_samples
    run["warmup"], run["window"] = windows(total_samples)
    processes = summarize(series)
    passed = verdict(load.tally, processes, total_samples)
    text = section(load.tally, processes, passed, run)
    print(text, flush=True)
    if not args.no_doc:
        DOC.write_text(replace_section(DOC.read_text(), text))
        print(f"wrote {DOC}")
    if not all(passed.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
