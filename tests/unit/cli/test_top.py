"""`fnplane top`'s arithmetic: per-version sums, counter deltas and histogram quantiles of scrapes."""

from __future__ import annotations

import math

from fnplane.cli.top import by_version, delta, errors_by_version, parse, quantile, rows

SCRAPE = """\
# TYPE fnplane_invocations_total counter
fnplane_invocations_total{function_id="f",function_version_id="v",route="pexec",status_code="200"} 10
fnplane_invocations_total{function_id="f",function_version_id="v",route="direct",status_code="504"} 2
fnplane_invocations_total{function_id="f",function_version_id="v",route="grpc",status_code="OK"} 3
fnplane_invocations_total{function_id="f",function_version_id="v",route="grpc",status_code="UNAVAILABLE"} 1
fnplane_invocations_total{function_id="",function_version_id="",route="pexec",status_code="401"} 5
# TYPE nvcf_function_queue_depth gauge
nvcf_function_queue_depth{function_id="f",function_version_id="v"} 4
# TYPE function_request_latency histogram
function_request_latency_bucket{function_id="f",function_version_id="v",le="0.1"} 5
function_request_latency_bucket{function_id="f",function_version_id="v",le="1.0"} 9
function_request_latency_bucket{function_id="f",function_version_id="v",le="+Inf"} 10
function_request_latency_count{function_id="f",function_version_id="v"} 10
function_request_latency_sum{function_id="f",function_version_id="v"} 3.0
"""


def test_sums_by_version_and_errors_by_status() -> None:
    samples = parse(SCRAPE)
    assert by_version(samples, "fnplane_invocations_total") == {("f", "v"): 16}
    assert by_version(samples, "fnplane_invocations_total", route="grpc") == {("f", "v"): 4}
    assert errors_by_version(samples) == {("f", "v"): 3}  # the 504 and UNAVAILABLE; no version: none


def test_quantiles_interpolate_as_histogram_quantile_does() -> None:
    buckets = {0.1: 5.0, 1.0: 9.0, math.inf: 10.0}
    assert quantile(0.5, buckets) == 0.1
    assert math.isclose(quantile(0.75, buckets) or 0, 0.1 + 0.9 * (7.5 - 5) / 4)
    assert quantile(0.99, buckets) == 1.0  # in +Inf: the largest finite bound
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_a_counter_reset_counts_its_new_value() -> None:
    assert delta({"a": 5.0, "b": 2.0}, {"a": 3.0, "b": 7.0}) == {"a": 2.0, "b": 2.0}


def test_rows_rate_the_interval_and_skip_undeployed_versions() -> None:
    before = parse(SCRAPE)
    after = parse(SCRAPE.replace('status_code="200"} 10', 'status_code="200"} 30'))
    versions = [
        {"id": "f", "versionId": "v", "name": "echo", "status": "ACTIVE"},
        {"id": "g", "versionId": "w", "name": "idle", "status": "INACTIVE"},
    ]
    [row] = rows(versions, before, after, 2.0)
    assert (row.name, row.queued, row.requestsPerSecond, row.errorsPerSecond) == ("echo", 4, 10.0, 0.0)
    assert row.p50Ms is None  # no latency observed in the interval
    [first] = rows(versions, None, after, 0.0)
    assert first.requestsPerSecond is None and first.queued == 4
