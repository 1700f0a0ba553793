"""The workers' metrics, exposed by their agent: NVCF's `nvcf_worker_service_*` per version.

A worker measures (busy slot-seconds, invocations, time per request, time in the queue) and sends the
figures in its `metrics` events (compute/worker/events.py); its supervisor hands each event to
`WORKER_METRICS`, which adds them up per version and is scraped with the agent's registry. So a worker
needs no port of its own, and one agent's scrape shows all of its instances.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from fnplane.shared import metrics
from fnplane.shared.metrics import Distribution

VersionKey = tuple[str, str]


@dataclass
class _VersionTotals:
    busy_seconds: float = 0.0
    requests: int = 0
    request_time: Distribution = field(default_factory=lambda: Distribution(metrics.WORKER_LATENCY_BUCKETS_S))
    queue_wait: Distribution = field(default_factory=lambda: Distribution(metrics.QUEUE_WAIT_BUCKETS_S))


class WorkerMetrics(Collector):
    def __init__(self) -> None:
        self._totals: dict[VersionKey, _VersionTotals] = {}
        # the slots of each running worker, by instance: a worker that stops takes its slots along
        self._slots: dict[str, tuple[VersionKey, int]] = {}

    def record(self, instance_id: str, version: VersionKey, event: Mapping[str, Any]) -> None:
        """One `metrics` event of the worker of `instance_id`."""
        totals = self._totals.setdefault(version, _VersionTotals())
        totals.busy_seconds += max(0.0, float(event.get("busySlotSeconds", 0.0)))
        totals.requests += max(0, int(event.get("invocations", 0)))
        totals.request_time.merge(event.get("requestSeconds"))
        totals.queue_wait.merge(event.get("queueWaitSeconds"))
        self._slots[instance_id] = (version, max(0, int(event.get("slots", 0))))

    def worker_stopped(self, instance_id: str) -> None:
        self._slots.pop(instance_id, None)

    def collect(self) -> Iterator[Any]:
        labels = list(metrics.VERSION_LABELS)
        threads = GaugeMetricFamily(
            metrics.WORKER_THREADS,
            "Request slots of the running workers (NVCF worker threads).",
            labels=labels,
        )
        slots: dict[VersionKey, int] = {}
        for version, count in self._slots.values():
            slots[version] = slots.get(version, 0) + count
        for version, count in sorted(slots.items()):
            threads.add_metric(list(version), count)
        busy = CounterMetricFamily(
            metrics.WORKER_BUSY_SECONDS, "Slot-seconds spent on requests (NVCF).", labels=labels
        )
        requests = CounterMetricFamily(
            metrics.WORKER_REQUESTS, "Requests workers took (NVCF).", labels=labels
        )
        latency = HistogramMetricFamily(
            metrics.WORKER_REQUEST_LATENCY,
            "Seconds from a worker taking a request to its last answer byte (NVCF).",
            labels=labels,
        )
        waits = HistogramMetricFamily(
            metrics.WORKER_QUEUE_WAIT,
            "Seconds a request waited in its work queue for a worker.",
            labels=labels,
        )
        for version, totals in sorted(self._totals.items()):
            busy.add_metric(list(version), totals.busy_seconds)
            requests.add_metric(list(version), totals.requests)
            latency.add_metric(list(version), totals.request_time.cumulative(), totals.request_time.total)
            waits.add_metric(list(version), totals.queue_wait.cumulative(), totals.queue_wait.total)
        yield from (threads, busy, requests, latency, waits)


WORKER_METRICS = WorkerMetrics()
REGISTRY.register(WORKER_METRICS)
