"""`fnplane up --metrics-port`: after a known set of invocations, GET /metrics shows exactly those.

One platform, one instance of examples/inv_function.py (one slot), and a second function with a
rate limit. Prometheus' own parser reads the scrape, so a malformed exposition fails here too.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import promql_parser
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from up_process import (
    INV_FUNCTION,
    UpProcess,
    deploy_function,
    deploy_inv_function,
    free_port,
    grpc_function_body,
)

pytestmark = pytest.mark.xdist_group("metrics")
GRPC_FUNCTION = Path(__file__).resolve().parent / "grpc_function.py"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics by (name, sorted labels)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def matching(samples: dict, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of `name` whose labels include `labels`."""
    return {key: v for (n, key), v in samples.items() if n == name and set(labels.items()) <= set(key)}


def wait_until(predicate, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


@pytest.fixture
def platform(tmp_path: Path, start_up: type[UpProcess]) -> tuple[UpProcess, dict[str, str], int]:
    port = free_port()
    up = start_up(tmp_path / "home", args=["--metrics-port", str(port)])
    up.wait_healthy()
    key = (tmp_path / "home" / "admin-key").read_text().strip()
    return up, {"Authorization": f"Bearer {key}"}, port


def listening_ports(up: UpProcess) -> set[int]:
    """The TCP ports `fnplane up` itself listens on (its nats-server child not included)."""
    process = psutil.Process(up.process.pid)
    return {c.laddr.port for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def serves_metrics(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "# TYPE process_cpu_seconds_total" in response.text


def test_without_the_flag_no_port_serves_metrics(tmp_path: Path, start_up: type[UpProcess]) -> None:
    up = start_up(tmp_path / "home")
    up.wait_healthy()
    ports = listening_ports(up)
    assert {up.port, up.grpc_port} <= ports
    assert not any(serves_metrics(port) for port in ports)


def test_the_flag_adds_one_port_that_serves_only_metrics(
    platform: tuple[UpProcess, dict[str, str], int],
) -> None:
    up, _, port = platform
    assert port in listening_ports(up)
    assert [p for p in listening_ports(up) if serves_metrics(p)] == [port]
    assert httpx.get(f"http://127.0.0.1:{port}/v2/nvcf/functions").status_code == 404
    assert httpx.head(f"http://127.0.0.1:{port}/metrics").status_code == 200


def test_invocations_latency_sse_and_errors_are_counted(
    platform: tuple[UpProcess, dict[str, str], int],
) -> None:
    up, auth, port = platform
    fn = deploy_inv_function(up, auth, name="metered", inference_url="/supreme")
    fid, vid = fn["id"], fn["versionId"]
    direct = {**auth, "Host": f"{fid}.invocation.localhost"}
    with httpx.Client(base_url=up.url, timeout=30) as client:
        for i in range(3):
            r = client.post(
                f"/v2/nvcf/pexec/functions/{fid}", json={"message": i, "repeats": 1}, headers=auth
            )
            assert r.status_code == 200, r.text
        for i in range(2):
            assert client.post("/echo", json={"d": i}, headers=direct).status_code == 200
        events = client.get("/sse?events=4&interval=0.05", headers={**direct, "Accept": "text/event-stream"})
        assert events.status_code == 200 and events.text.count("data:") == 4
        # a result over 5 MiB: 302 to its download
        large = client.post(
            f"/v2/nvcf/pexec/functions/{fid}",
            json={"message": "x", "size": 6_000_000, "repeats": 1},
            headers=auth,
        )
        assert large.status_code == 302, large.text
        # the one slot busy for 6 s: this caller gets 202 after its 1 s window ...
        slow = client.post(
            f"/v2/nvcf/pexec/functions/{fid}",
            json={"message": "slow", "repeats": 1, "delay": 6},
            headers={**auth, "NVCF-POLL-SECONDS": "1"},
        )
        assert slow.status_code == 202, slow.text
        # ... and a request behind it, never picked up within its window, 504 (queued meanwhile)
        depths: list[float] = []

        def watch_queue() -> None:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                depths.append(value(scrape(port), "nvcf_function_queue_depth", function_id=fid,
                                    function_version_id=vid))  # fmt: skip
                time.sleep(0.1)

        watcher = threading.Thread(target=watch_queue)
        watcher.start()
        timeout = client.post("/echo", json={}, headers={**direct, "NVCF-POLL-SECONDS": "1"})
        watcher.join()
        assert timeout.status_code == 504, timeout.text
        assert max(depths) == 1.0
        # an unknown credential: refused by the gateway
        bad = client.post(
            f"/v2/nvcf/pexec/functions/{fid}", json={}, headers={"Authorization": "Bearer nvapi-nope"}
        )
        assert bad.status_code == 401

    route = {"function_id": fid, "function_version_id": vid}

    def counted() -> dict:
        samples = scrape(port)
        done = value(samples, "fnplane_invocations_total", **route, route="direct", status_code="504")
        return samples if done else {}

    samples = wait_until(counted)
    assert samples, "the 504 was never counted"
    assert value(samples, "fnplane_invocations_total", **route, route="pexec", status_code="200") == 3
    # direct: 2 echoes and the SSE stream
    assert value(samples, "fnplane_invocations_total", **route, route="direct", status_code="200") == 3
    assert value(samples, "fnplane_invocations_total", **route, route="pexec", status_code="202") == 1
    assert value(samples, "fnplane_invocations_total", **route, route="pexec", status_code="302") == 1
    assert value(samples, "fnplane_invocations_total", **route, route="direct", status_code="504") == 1
    # NVCF's started-invocations counter: every admitted call of the account (3 + 3 + 302 + 202 + 504)
    started = matching(samples, "function_request_total", function_id=fid, function_version_id=vid)
    assert sum(started.values()) == 9
    assert value(samples, "function_request_latency_count", **route) == 9
    assert value(samples, "function_request_latency_bucket", **route, le="+Inf") == 9
    assert value(samples, "fnplane_sse_events_total", **route) == 4
    assert value(samples, "fnplane_sse_bytes_total", **route) == len(events.content)
    # the platform's own errors: the gateway timeout (by function) and the 401 (no function known)
    assert value(samples, "app_invocation_error_total", http_status_code="504", function_id=fid) == 1
    assert value(samples, "app_invocation_error_total", http_status_code="401", function_id="") == 1
    assert value(samples, "fnplane_auth_failures_total", plane="invocation", reason="unknown") >= 1, matching(
        samples, "fnplane_auth_failures_total"
    )
    # nothing labelled with a request id or a credential
    assert not any("nope" in str(key) for key in samples)
    # the instance gauges
    assert value(samples, "nvcf_function_instances_current", **route) == 1
    assert value(samples, "fnplane_instances", **route, state="running") == 1
    # control API: counted by route template, never by concrete path
    templates = {dict(key).get("route") for key in matching(samples, "fnplane_http_requests_total")}
    assert "/v2/nvcf/functions/{functionId}/versions/{functionVersionId}" in templates
    assert not any(fid in str(t) for t in templates)
    assert value(samples, "fnplane_cold_start_seconds_count", phase="deploy") == 1
    assert value(samples, "process_resident_memory_bytes") > 0

    # the worker's figures arrive with its next metrics event
    def worker_reported() -> dict:
        s = scrape(port)
        return s if value(s, "nvcf_worker_service_request_latency_seconds_count", **route) >= 8 else {}

    reported = wait_until(worker_reported)
    assert reported, matching(scrape(port), "nvcf_worker_service_request_total")
    samples = reported
    assert value(samples, "nvcf_worker_service_worker_thread_count_total", **route) == 1
    assert value(samples, "nvcf_worker_service_worker_thread_busy_seconds_total", **route) >= 3.0
    assert value(samples, "nvcf_worker_service_request_latency_seconds_count", **route) >= 8
    assert value(samples, "fnplane_request_queue_wait_seconds_count", **route) >= 8

    # undeployed: the version's instance gauges go with it
    r = httpx.delete(f"{up.url}/v2/nvcf/deployments/functions/{fid}/versions/{vid}", headers=auth)
    assert r.status_code == 200, r.text

    def scaled_down() -> bool:
        s = scrape(port)
        return not matching(s, "nvcf_function_instances_current", **route) and not matching(
            s, "nvcf_function_queue_depth", **route
        )

    assert wait_until(scaled_down), matching(scrape(port), "fnplane_instances", **route)


def test_a_rate_limited_call_is_a_429_of_the_platform(
    platform: tuple[UpProcess, dict[str, str], int],
) -> None:
    up, auth, port = platform
    body = {
        "name": "limited",
        "inferenceUrl": "/echo",
        "inferencePort": 8000,
        "containerArgs": f"{sys.executable} {INV_FUNCTION} $(PORT)",
        "rateLimit": {"rateLimit": "1-M"},
    }
    fn = deploy_function(up, auth, body)
    route = {"function_id": fn["id"], "function_version_id": fn["versionId"]}
    with httpx.Client(base_url=up.url, headers=auth, timeout=30) as client:
        codes = [client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={}).status_code for _ in range(3)]
    assert codes == [200, 429, 429], codes
    samples = scrape(port)
    assert value(samples, "fnplane_invocations_total", **route, route="pexec", status_code="429") == 2
    assert value(samples, "app_invocation_error_total", http_status_code="429", function_id=fn["id"]) == 2
    # NVCF counts an invocation when it starts: a refused one never did
    assert sum(matching(samples, "function_request_total", **route).values()) == 1


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Grafana's variables, as a query in Prometheus would see them
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$function_id": ".*"}


def metric_names(node: object) -> set[str]:
    """Every metric a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name} if node.name else set()
    names: set[str] = set()
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector", "args"):
        child = getattr(node, attribute, None)
        for item in child if isinstance(child, list) else [child]:
            if item is not None:
                names |= metric_names(item)
    return names


def shipped_queries() -> dict[str, str]:
    """Every PromQL expression of the shipped dashboard and alert rules, by where it is."""
    queries = {}
    dashboard = json.loads((DEPLOY / "grafana" / "fnplane-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queries[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label) is Grafana's, not PromQL: its metric is checked alone
            queries[f"variable {variable['name']}"] = variable["definition"].split("(", 1)[1].split(",")[0]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            queries[f"alert {rule['alert']}"] = rule["expr"]
            assert rule["labels"]["severity"] in ("warning", "critical")
    return queries


def test_the_dashboard_and_alert_rules_name_only_metrics_that_exist(
    platform: tuple[UpProcess, dict[str, str], int],
) -> None:
    _, _, port = platform
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    families = {family.name for family in text_string_to_metric_families(text)}
    queries = shipped_queries()
    assert len(queries) > 20
    for where, query in queries.items():
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        names = metric_names(promql_parser.parse(query))  # raises on a query that does not parse
        assert names, where
        for name in names:
            family = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert name in families or family in families, f"{where}: {name} is no metric of fnplane"


def test_a_scale_from_zero_is_a_wake_cold_start(platform: tuple[UpProcess, dict[str, str], int]) -> None:
    up, auth, port = platform
    fn = deploy_inv_function(up, auth, name="sleeper", inference_url="/echo", min_instances=0)
    r = httpx.post(
        f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}",
        json={"wake": True},
        headers={**auth, "NVCF-POLL-SECONDS": "120"},
        timeout=150,
    )
    assert r.status_code == 200, r.text
    samples = scrape(port)
    assert value(samples, "fnplane_cold_start_seconds_count", phase="wake") == 1
    # its instance started too: a deploy-phase cold start of the version
    assert value(samples, "fnplane_cold_start_seconds_count", phase="deploy") == 1


def test_an_openmetrics_scrape_carries_the_request_id_of_a_latency_as_its_exemplar(
    platform: tuple[UpProcess, dict[str, str], int],
) -> None:
    up, auth, port = platform
    fn = deploy_inv_function(up, auth, name="exemplary", inference_url="/echo")
    r = httpx.post(f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}", json={}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    scraped = httpx.get(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    [line] = [
        line
        for line in scraped.text.splitlines()
        if line.startswith("function_request_latency_bucket") and "# {" in line and fn["id"] in line
    ]
    assert f'request_id="{r.headers["nvcf-reqid"]}"' in line


def test_grpc_calls_and_sessions_are_counted(platform: tuple[UpProcess, dict[str, str], int]) -> None:
    import grpc

    up, auth, port = platform
    fn = deploy_function(up, auth, grpc_function_body("grpc-metered", GRPC_FUNCTION))
    route = {"function_id": fn["id"], "function_version_id": fn["versionId"]}
    key = auth["Authorization"].removeprefix("Bearer ")
    with grpc.insecure_channel(up.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        echo = channel.unary_unary("/fnplane.test.Fn/Echo")
        fail = channel.unary_unary("/fnplane.test.Fn/Fail")
        metadata = (("authorization", f"Bearer {key}"), ("function-id", fn["id"]))
        for _ in range(2):
            assert echo(b"hi", metadata=metadata, timeout=30) == b"hi"
        with pytest.raises(grpc.RpcError) as failed:
            fail(b"", metadata=(*metadata, ("x-code", "5")), timeout=30)
        assert failed.value.code() is grpc.StatusCode.NOT_FOUND
        unknown = (
            ("authorization", f"Bearer {key}"),
            ("function-id", "0" * 8 + "-0000-4000-8000-" + "0" * 12),
        )
        with pytest.raises(grpc.RpcError) as refused:
            echo(b"hi", metadata=unknown, timeout=30)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        samples = scrape(port)
        # one session holds a slot while the connection is open
        assert value(samples, "fnplane_grpc_sessions_active") == 1
    assert value(samples, "fnplane_invocations_total", **route, route="grpc", status_code="OK") == 2
    # the function's own NOT_FOUND is the function's answer, not the platform's error
    assert value(samples, "fnplane_invocations_total", **route, route="grpc", status_code="NOT_FOUND") == 1
    assert (
        value(samples, "app_invocation_error_total", http_status_code="NOT_FOUND", function_id=fn["id"]) == 0
    )
    # the unknown function: the platform's refusal, with no function label (the client chose that id)
    no_function = {"function_id": "", "function_version_id": ""}
    assert (
        value(samples, "fnplane_invocations_total", **no_function, route="grpc", status_code="NOT_FOUND") == 1
    )
    assert value(samples, "app_invocation_error_total", http_status_code="NOT_FOUND", function_id="") == 1
    # a session counts once as a started invocation (NVCF's gRPC proxy)
    assert sum(matching(samples, "function_request_total", **route).values()) == 1


def test_fnplane_top_shows_rates_instances_and_latency(
    platform: tuple[UpProcess, dict[str, str], int], tmp_path: Path
) -> None:
    from cli_process import Cli

    up, auth, port = platform
    fn = deploy_inv_function(up, auth, name="watched", inference_url="/echo")
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=up.url, headers=auth, timeout=30) as client:
            while not stop.is_set():
                client.post(f"/v2/nvcf/pexec/functions/{fn['id']}", json={})

    loader = threading.Thread(target=load)
    loader.start()
    try:
        cli = Cli(up.url, auth["Authorization"].removeprefix("Bearer "), tmp_path / "config.json")
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        snapshot = cli.json("top", "--interval", "2", "--metrics-url", metrics_url)  # --json: --once
        table = cli.ok("top", "--once", "--interval", "1", env={"FNPLANE_METRICS_URL": metrics_url})
    finally:
        stop.set()
        loader.join()
    [row] = [r for r in snapshot["versions"] if r["functionId"] == fn["id"]]
    assert row["name"] == "watched" and row["status"] == "ACTIVE" and row["instances"] == 1
    assert row["requestsPerSecond"] > 0 and row["errorsPerSecond"] == 0
    assert row["p50Ms"] is not None and 0 < row["p50Ms"] <= row["p95Ms"]
    assert "watched" in table.stdout.decode()

    # the live view refreshes until interrupted, then exits cleanly
    cli.env["COLUMNS"] = "160"  # a terminal wide enough for every column
    live = cli.popen("top", "--interval", "0.3", "--metrics-url", metrics_url)
    time.sleep(2)
    live.send_signal(signal.SIGINT)
    out, err = live.communicate(timeout=20)
    assert live.returncode in (0, 130), err.decode()
    assert b"fnplane top" in out and b"watched" in out
