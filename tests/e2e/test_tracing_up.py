"""Traces and JSON logs of a real `fnplane up` (issue 13, parts 2 and 3).

An OTLP/HTTP receiver runs in the test process: a small HTTP server on a free port that takes
`POST /v1/traces` and decodes the protobuf ExportTraceServiceRequest (opentelemetry-proto). The
function (examples/inv_function.py `/inspect`) answers with the headers it received.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from up_process import REPO, UpProcess, deploy_function, deploy_inv_function, grpc_function_body

SPANS_TIMEOUT_S = 30.0
GRPC_FUNCTION = REPO / "tests" / "e2e" / "grpc_function.py"


class Receiver:
    """The spans exported to it, as dicts: name, service, kind, trace/span/parent ids (hex), attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.add(request)
                    answer = ExportTraceServiceResponse().SerializeToString()
                    self.send_response(200)
                else:
                    answer = b""
                    self.send_response(404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {}
                    for a in span.attributes:
                        value = a.value
                        kind = value.WhichOneof("value")
                        attributes[a.key] = getattr(value, kind) if kind else None
                    with self.lock:
                        self.spans.append(
                            {
                                "name": span.name,
                                "service": resource.get("service.name"),
                                "kind": Span.SpanKind.Name(span.kind),
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex(),
                                "attributes": attributes,
                            }
                        )

    def of_all(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)

    def of_trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["trace_id"] == trace_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _key(home: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {(home / 'admin-key').read_text().strip()}"}


def _seen_headers(response: httpx.Response) -> dict[str, str]:
    """The headers the function received, by lower-case name."""
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def _grpc_metadata_seen(up: UpProcess, fn: dict, key: str, traceparent: str) -> tuple[dict, str]:
    """The metadata the gRPC function received for a call with `traceparent`, and the call's nvcf-reqid."""
    with grpc.insecure_channel(up.grpc_target) as channel:
        seen, call = channel.unary_unary("/fnplane.test.Fn/Metadata").with_call(
            b"",
            metadata=(("authorization", key), ("function-id", fn["id"]), ("traceparent", traceparent)),
            timeout=30,
        )
    return json.loads(seen), dict(call.initial_metadata())["nvcf-reqid"]


def test_a_client_trace_is_continued_to_the_function(
    tmp_path: Path, start_up: type[UpProcess], receiver: Receiver
) -> None:
    home = tmp_path / "home"
    up = start_up(
        home,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"},
        args=["--log-format", "json"],
    )
    up.wait_healthy()
    headers = _key(home)
    fn = deploy_inv_function(up, headers, name="traced", inference_url="/inspect")

    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(
        f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}",
        json={"hello": "trace"},
        headers={**headers, "traceparent": f"00-{trace_id}-{client_span}-01", "tracestate": "client=1"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    request_id = r.headers["nvcf-reqid"]
    seen = _seen_headers(r)
    version, seen_trace, seen_parent, flags = seen["traceparent"].split("-")
    assert (version, seen_trace, flags) == ("00", trace_id, "01")
    assert seen_parent != client_span  # the platform's span, not the client's
    assert "client=1" in seen.get("tracestate", "")

    deadline = time.monotonic() + SPANS_TIMEOUT_S
    while True:
        spans = receiver.of_trace(trace_id)
        names = {span["name"] for span in spans}
        ids = {span["span_id"] for span in spans}
        kinds = {span["kind"] for span in spans}
        # the gateway's span ends after the answer's last byte: it may come in a later batch
        if seen_parent in ids and {"admission", "queue wait"} <= names and "SPAN_KIND_SERVER" in kinds:
            break
        assert time.monotonic() < deadline, f"spans of the trace so far: {spans}"
        time.sleep(0.2)

    (gateway,) = [s for s in spans if s["kind"] == "SPAN_KIND_SERVER"]
    assert gateway["service"] == "fnplane"
    assert gateway["parent_id"] == client_span
    assert gateway["name"] == "POST /v2/nvcf/pexec/functions/{id}"
    attributes = gateway["attributes"]
    assert attributes["request_id"] == request_id
    assert attributes["function_id"] == fn["id"]
    assert attributes["function_version_id"] == fn["versionId"]
    assert attributes["http.response.status_code"] == 200
    assert attributes["nca_id"]

    (work,) = [s for s in spans if s["name"] == "Handle Work Request"]
    assert work["service"] == "fnplane-worker"
    assert work["kind"] == "SPAN_KIND_CONSUMER"
    assert work["attributes"]["requestId"] == request_id
    # the worker continues the context the gateway put into the queued request's NATS headers
    assert work["parent_id"] in {s["span_id"] for s in spans if s["service"] == "fnplane"}
    # and the function's request continues the worker's span
    assert seen_parent == work["span_id"]
    # the invocation's access line names the same trace and the gateway's span
    (access,) = _access_lines(up, request_id)
    assert (access["trace_id"], access["span_id"]) == (trace_id, gateway["span_id"])
    (queued,) = [s for s in spans if s["name"] == "queue wait"]
    assert queued["parent_id"] == work["parent_id"]
    (admission,) = [s for s in spans if s["name"] == "admission"]
    assert admission["parent_id"] == gateway["span_id"]

    # gRPC: the proxy's span of the call continues the client's traceparent metadata
    grpc_fn = deploy_function(up, headers, grpc_function_body("traced-grpc", GRPC_FUNCTION))
    grpc_trace, grpc_client_span = secrets.token_hex(16), secrets.token_hex(8)
    seen_md, grpc_request_id = _grpc_metadata_seen(
        up, grpc_fn, headers["Authorization"], f"00-{grpc_trace}-{grpc_client_span}-01"
    )
    (grpc_traceparent,) = seen_md["traceparent"]
    _, seen_trace, grpc_parent, _ = grpc_traceparent.split("-")
    assert seen_trace == grpc_trace and grpc_parent != grpc_client_span
    deadline = time.monotonic() + SPANS_TIMEOUT_S
    while not (calls := [s for s in receiver.of_trace(grpc_trace) if s["span_id"] == grpc_parent]):
        assert time.monotonic() < deadline, f"spans of the trace so far: {receiver.of_trace(grpc_trace)}"
        time.sleep(0.2)
    (call,) = calls
    assert call["name"] == "fnplane.test.Fn/Metadata"
    assert call["parent_id"] == grpc_client_span
    assert call["attributes"]["request_id"] == grpc_request_id
    assert call["attributes"]["rpc.grpc.status_code"] == 0
    # the agents' own polls and reports to the control plane are not traced, nor FastAPI's inner steps
    names = {span["name"] for span in receiver.of_all()}
    assert not [name for name in names if "/v1/fnplane/" in name or name.startswith("fastapi.")], names


def test_json_logs_and_the_untouched_traceparent_without_tracing(
    tmp_path: Path, start_up: type[UpProcess], receiver: Receiver
) -> None:
    home = tmp_path / "home"
    up = start_up(home, args=["--log-format", "json"])
    up.wait_healthy()
    headers = _key(home)
    fn = deploy_inv_function(up, headers, name="untraced", inference_url="/inspect")

    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    r = httpx.post(
        f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}",
        json={"hello": "logs"},
        headers={**headers, "traceparent": traceparent},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    request_id = r.headers["nvcf-reqid"]
    # no tracing: the client's own traceparent reaches the function as it was sent
    assert _seen_headers(r)["traceparent"] == traceparent
    missing = httpx.post(
        f"{up.url}/v2/nvcf/pexec/functions/{fn['id']}/versions/00000000-0000-0000-0000-000000000000",
        json={},
        headers=headers,
        timeout=30,
    )
    assert missing.status_code == 404
    grpc_fn = deploy_function(up, headers, grpc_function_body("untraced-grpc", GRPC_FUNCTION))
    seen_md, grpc_request_id = _grpc_metadata_seen(up, grpc_fn, headers["Authorization"], traceparent)
    assert seen_md["traceparent"] == [traceparent]
    assert up.stop() == 0

    lines = [json.loads(line) for line in up.stderr.splitlines() if line.strip()]
    assert lines, "fnplane up wrote no log lines"
    for line in lines:
        assert {"time", "level", "component", "message"} <= line.keys(), line
        assert "trace_id" not in line
    (access,) = [x for x in lines if x["component"] == "fnplane.access" and x.get("request_id") == request_id]
    assert access["status"] == 200
    assert access["route"] == "pexec"
    assert access["method"] == "POST"
    assert access["function_id"] == fn["id"]
    assert access["function_version_id"] == fn["versionId"]
    assert access["account"]
    assert access["duration_ms"] >= 0
    # an error answer has its access line too (before any request id exists)
    refused = [x for x in lines if x["component"] == "fnplane.access" and x.get("status") == 404]
    assert refused and refused[0]["function_id"] == fn["id"]
    (grpc_access,) = [x for x in lines if x["component"] == "fnplane.access" and x["route"] == "grpc"]
    assert grpc_access["request_id"] == grpc_request_id
    assert grpc_access["status"] == "OK"
    assert grpc_access["path"] == "/fnplane.test.Fn/Metadata"
    assert grpc_access["function_version_id"] == grpc_fn["versionId"]
    assert receiver.spans == []

    # the worker the agent started inherited the format
    worker_logs = list(home.rglob("*.worker.log"))
    assert worker_logs
    worker_lines = [line for log in worker_logs for line in log.read_text().splitlines() if line.strip()]
    assert worker_lines
    versions = {json.loads(line)["function_version_id"] for line in worker_lines}
    assert versions == {fn["versionId"], grpc_fn["versionId"]}


def _access_lines(up: UpProcess, request_id: str, timeout_s: float = 10.0) -> list[dict]:
    """The access lines of a request, once written: log lines reach stderr in batches, within 0.2 s."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [json.loads(line) for line in up.stderr.splitlines() if line.strip()]
        found = [x for x in lines if x["component"] == "fnplane.access" and x.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
