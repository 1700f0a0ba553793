"""`fnplane top`: a live view of functions, versions, instances, queues, rates and latency.

What runs comes from the API (the caller's functions and their versions); rates, errors and latency
percentiles from two scrapes of a metrics port (`--metrics-url`, or FNPLANE_METRICS_URL: the
`--metrics-port` of `fnplane up`), as Prometheus would compute them over the refresh interval.
Without a metrics URL the view shows what the API knows: status, instances (each deployed version's
`activeInstances`) and queue depth.

    fnplane top --metrics-url http://127.0.0.1:9464/metrics
    fnplane top --once --json      # one snapshot, for scripts
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from fnplane.cli.config import ApiKeyOption, UrlOption
from fnplane.cli.output import Column, JsonOption, Output
from fnplane.cli.session import open_session

# (metric name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
VersionKey = tuple[str, str]
DEPLOYED = frozenset({"ACTIVE", "DEPLOYING", "DEGRADED", "DEGRADING", "ERROR"})


@dataclass
class VersionRow:
    name: str
    functionId: str
    versionId: str
    status: str
    instances: int | None
    queued: int | None
    requestsPerSecond: float | None
    errorsPerSecond: float | None
    p50Ms: float | None
    p95Ms: float | None


def parse(text: str) -> Samples:
    """The samples of one Prometheus text-format scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def by_version(samples: Samples, name: str, **match: str) -> dict[VersionKey, float]:
    """`sum by (function_id, function_version_id)` of `name`, over samples whose labels include `match`."""
    sums: dict[VersionKey, float] = defaultdict(float)
    for (sample_name, labels), value in samples.items():
        if sample_name != name:
            continue
        label = dict(labels)
        if any(label.get(k) != v for k, v in match.items()):
            continue
        if label.get("function_version_id"):
            sums[(label.get("function_id", ""), label["function_version_id"])] += value
    return dict(sums)


def errors_by_version(samples: Samples) -> dict[VersionKey, float]:
    """Invocation answers with a status of 400 or more (HTTP) or other than OK (gRPC)."""
    sums: dict[VersionKey, float] = defaultdict(float)
    for (name, labels), value in samples.items():
        if name != "fnplane_invocations_total":
            continue
        label = dict(labels)
        code = label.get("status_code", "")
        failed = code[:1] in ("4", "5") if code[:1].isdigit() else code not in ("OK", "")
        if failed and label.get("function_version_id"):
            sums[(label.get("function_id", ""), label["function_version_id"])] += value
    return dict(sums)


def latency_buckets(samples: Samples) -> dict[VersionKey, dict[float, float]]:
    """Cumulative `function_request_latency` bucket counts per version, by upper bound."""
    buckets: dict[VersionKey, dict[float, float]] = defaultdict(dict)
    for (name, labels), value in samples.items():
        if name != "function_request_latency_bucket":
            continue
        label = dict(labels)
        version = (label.get("function_id", ""), label.get("function_version_id", ""))
        buckets[version][float(label["le"])] = value
    return dict(buckets)


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """`histogram_quantile` over cumulative bucket counts: linear within the bucket it falls in."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):  # above the largest finite bound: that bound is all we know
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def delta(after: Mapping[Any, float], before: Mapping[Any, float]) -> dict[Any, float]:
    """Counter increase per key (a counter that went down was reset: its new value is the increase)."""
    out = {}
    for key_, value in after.items():
        previous = before.get(key_, 0.0)
        out[key_] = value - previous if value >= previous else value
    return out


def rows(
    versions: Iterable[Mapping[str, Any]],
    before: Samples | None,
    after: Samples | None,
    seconds: float,
    queued: Mapping[VersionKey, int] | None = None,
) -> list[VersionRow]:
    """One row per deployed version; the rates over the `seconds` between two scrapes."""
    requests: dict[VersionKey, float] = {}
    failed: dict[VersionKey, float] = {}
    latency: dict[VersionKey, dict[float, float]] = {}
    instances: dict[VersionKey, float] = {}
    depth: dict[VersionKey, float] = {}
    if after is not None:
        instances = by_version(after, "nvcf_function_instances_current")
        depth = by_version(after, "nvcf_function_queue_depth")
        if before is not None and seconds > 0:
            requests = delta(
                by_version(after, "fnplane_invocations_total"),
                by_version(before, "fnplane_invocations_total"),
            )
            failed = delta(errors_by_version(after), errors_by_version(before))
            old = latency_buckets(before)
            latency = {v: delta(b, old.get(v, {})) for v, b in latency_buckets(after).items()}
    out = []
    for version in versions:
        key_ = (str(version.get("id", "")), str(version.get("versionId", "")))
        status = str(version.get("status", ""))
        if status not in DEPLOYED:
            continue
        active = version.get("activeInstances")
        count = len(active) if isinstance(active, list) else instances.get(key_)
        waiting = (queued or {}).get(key_, depth.get(key_))
        rate = requests.get(key_, 0.0) / seconds if before is not None and seconds > 0 else None
        errors = failed.get(key_, 0.0) / seconds if before is not None and seconds > 0 else None
        buckets = latency.get(key_, {})
        p50, p95 = quantile(0.5, buckets), quantile(0.95, buckets)
        out.append(
            VersionRow(
                name=str(version.get("name", "")),
                functionId=key_[0],
                versionId=key_[1],
                status=status,
                instances=int(count) if count is not None else None,
                queued=int(waiting) if waiting is not None else None,
                requestsPerSecond=round(rate, 3) if rate is not None else None,
                errorsPerSecond=round(errors, 3) if errors is not None else None,
                p50Ms=round(p50 * 1000, 2) if p50 is not None else None,
                p95Ms=round(p95 * 1000, 2) if p95 is not None else None,
            )
        )
    return sorted(out, key=lambda r: (r.name, r.versionId))


def _cell(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


COLUMNS: list[Column] = [
    ("NAME", lambda r: r.name),
    ("FUNCTION", lambda r: r.functionId[:8]),
    ("VERSION", lambda r: r.versionId[:8]),
    ("STATUS", lambda r: r.status),
    ("INST", lambda r: _cell(r.instances)),
    ("QUEUED", lambda r: _cell(r.queued)),
    ("REQ/S", lambda r: _cell(r.requestsPerSecond, "{:.2f}")),
    ("ERR/S", lambda r: _cell(r.errorsPerSecond, "{:.2f}")),
    ("P50 ms", lambda r: _cell(r.p50Ms, "{:.1f}")),
    ("P95 ms", lambda r: _cell(r.p95Ms, "{:.1f}")),
]


def render(table_rows: list[VersionRow], source: str) -> Any:
    """The Rich table of one refresh of the live view."""
    from rich.table import Table

    table = Table(title=f"fnplane top  {time.strftime('%H:%M:%S')}  {source}", expand=True)
    for index, (header, _) in enumerate(COLUMNS):
        table.add_column(header, justify="left" if index < 4 else "right", no_wrap=True)
    for row in table_rows:
        table.add_row(*(str(cell(row)) for _, cell in COLUMNS))
    if not table_rows:
        table.caption = "no deployed versions"
    return table


def top(
    metrics_url: Annotated[
        str | None,
        typer.Option(
            help="GET /metrics of the platform (fnplane up --metrics-port); default $FNPLANE_METRICS_URL.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.2)] = 2.0,
    once: Annotated[
        bool, typer.Option("--once", help="One snapshot over one interval, then exit (implied by --json).")
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """A live view of deployed functions: instances, queue depth, request and error rates, p50/p95."""
    import httpx

    metrics_url = metrics_url or os.environ.get("FNPLANE_METRICS_URL") or None
    with open_session(url, api_key, as_json) as session, httpx.Client(timeout=10) as http:

        def scrape() -> Samples | None:
            if metrics_url is None:
                return None
            response = http.get(metrics_url)
            response.raise_for_status()
            return parse(response.text)

        def versions() -> list[dict[str, Any]]:
            from fnplane.sdk import NotFoundError

            listed = session.client.list_functions()
            if metrics_url is not None:
                return listed  # the scrape has the instance counts
            # the list has no instances; a version's own record has (activeInstances, with the
            # list_functions_details scope)
            detailed = []
            for version in listed:
                if version.get("status") in DEPLOYED:
                    try:
                        version = session.client.get_version(str(version["id"]), str(version["versionId"]))
                    except NotFoundError:  # deleted since the list
                        continue
                detailed.append(version)
            return detailed

        def queued(listed: list[dict[str, Any]]) -> dict[VersionKey, int] | None:
            if metrics_url is not None:
                return None  # the scrape has the queue depth
            from fnplane.sdk import BadRequestError, NotFoundError

            depths: dict[VersionKey, int] = {}
            for fid in sorted({str(v["id"]) for v in listed if v.get("status") in DEPLOYED}):
                try:
                    queues = session.client.queue(fid).get("queues") or []
                except NotFoundError:  # no queue: its only deployed version is in ERROR (or just went)
                    continue
                except BadRequestError:  # a public function: NVCF shows no queue of one
                    continue
                for queue in queues:
                    depths[(fid, str(queue.get("functionVersionId")))] = int(queue.get("queueDepth") or 0)
            return depths

        source = metrics_url or "no metrics URL: rates need --metrics-url"
        before, taken = scrape(), time.monotonic()
        if once or session.out.as_json:  # one JSON document: a snapshot
            time.sleep(interval)
            after, now = scrape(), time.monotonic()
            listed = versions()
            snapshot = rows(listed, before, after, now - taken, queued(listed))
            if session.out.as_json:
                session.out.json(
                    {"versions": [asdict(r) for r in snapshot], "intervalSeconds": round(now - taken, 3)}
                )
            else:  # a table as every command prints one: plain when piped
                session.out.table(COLUMNS, snapshot, empty="no deployed versions")
            return
        _live(session.out, interval, before, taken, scrape, versions, queued, source)


def _live(out: Output, interval: float, before: Samples | None, taken: float, scrape: Any, versions: Any,
          queued: Any, source: str) -> None:  # fmt: skip
    from rich.live import Live

    # Ctrl-C ends the view between two refreshes: a KeyboardInterrupt raised anywhere (inside rich's
    # refresh lock, say) could leave the view's thread waiting for ever
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        with Live(render([], source), console=out.console, refresh_per_second=4, screen=False) as live:
            while not interrupted.wait(interval):
                after, now = scrape(), time.monotonic()
                listed = versions()
                live.update(render(rows(listed, before, after, now - taken, queued(listed)), source))
                before, taken = after, now
    finally:
        signal.signal(signal.SIGINT, previous)
