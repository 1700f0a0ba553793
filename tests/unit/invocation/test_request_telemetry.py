"""invocation/request_telemetry.py: one access line per gateway request, with what the answer told, and
the metrics of an invocation."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from fnplane.invocation import observe
from fnplane.invocation.http import Request
from fnplane.invocation.request_telemetry import RequestTelemetry
from fnplane.telemetry import logs

FID = "6f2c0a4e-3b1d-4a59-9b7e-2d0c8c1f0a11"


def request(path: str, sent: list[dict]) -> Request:
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b"sig=secret"}

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    return Request(scope, receive, send)


async def test_the_access_line_carries_the_answer_and_the_request(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict] = []
    req = request(f"/v2/nvcf/pexec/functions/{FID}", sent)
    caplog.set_level(logging.INFO, logs.ACCESS_LOGGER)
    seen = RequestTelemetry(req, direct=None)
    logs.annotate(request_id="r1", function_id=FID, function_version_id="v1", account="nca")
    await req.send({"type": "http.response.start", "status": 202, "headers": []})
    await req.send({"type": "http.response.body", "body": b""})
    seen.close()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # passed on
    (record,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["status"] == 202 and fields["route"] == "pexec" and fields["method"] == "POST"
    assert (fields["request_id"], fields["function_version_id"], fields["account"]) == ("r1", "v1", "nca")
    assert fields["path"] == f"/v2/nvcf/pexec/functions/{FID}"  # never the query (signatures)
    assert "secret" not in record.getMessage()
    assert logs.current_fields() == {}  # the request's context is gone with it


async def test_a_request_id_minted_elsewhere_is_read_from_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    req = request("/anything", [])
    caplog.set_level(logging.INFO, logs.ACCESS_LOGGER)
    seen = RequestTelemetry(req, direct=(FID, None))
    await req.send({"type": "http.response.start", "status": 200, "headers": [(b"nvcf-reqid", b"r2")]})
    seen.close()
    (record,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["route"], fields["function_id"], fields["request_id"]) == ("direct", FID, "r2")


async def test_no_access_line_when_they_are_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logs.ACCESS_LOGGER)
    req = request("/v2/nvcf/assets", [])
    seen = RequestTelemetry(req, direct=None)
    await req.send({"type": "http.response.start", "status": 200, "headers": []})
    seen.close()
    assert not [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_one_watch_of_the_answer_counts_an_invocation_and_its_events() -> None:
    vid = "0b3e3d0e-5c57-4d6c-8d8e-5a0f2f9b1c22"
    labels = {"function_id": FID, "function_version_id": vid}
    before = {
        "answers": _sample("fnplane_invocations_total", **labels, route="pexec", status_code="200"),
        "events": _sample("fnplane_sse_events_total", **labels),
        "bytes": _sample("fnplane_sse_bytes_total", **labels),
        "latency": _sample("function_request_latency_count", **labels),
    }
    sent: list[dict] = []
    req = request(f"/v2/nvcf/pexec/functions/{FID}", sent)
    seen = RequestTelemetry(req, direct=None, counted=("pexec", FID))
    assert _sample("fnplane_invocations_in_flight", route="pexec") >= 1
    observe.chosen(vid, "nca")  # what admission tells the request's telemetry
    headers = [(b"content-type", b"text/event-stream"), (b"nvcf-reqid", b"r3")]
    await req.send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in (b"data: 1\n\ndata: 2\n", b"\ndata: 3\r\n\r\n"):  # the second event straddles chunks
        await req.send({"type": "http.response.body", "body": chunk, "more_body": True})
    await req.send({"type": "http.response.body", "body": b""})
    seen.close()
    assert len(sent) == 4  # each passed on
    assert (
        _sample("fnplane_invocations_total", **labels, route="pexec", status_code="200")
        == before["answers"] + 1
    )
    assert _sample("fnplane_sse_events_total", **labels) == before["events"] + 3
    assert _sample("fnplane_sse_bytes_total", **labels) == before["bytes"] + 29
    assert _sample("function_request_latency_count", **labels) == before["latency"] + 1
    assert logs.current_fields() == {}
    observe.own_error()  # after the request: nobody's answer to mark


async def test_a_control_character_in_the_path_cannot_forge_an_access_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the path arrives percent-decoded: /x%0A... would end the line and begin a made-up one
    forged = "/x\n2026-12-03 12:00:00,000 INFO    fnplane.access: GET /admin direct 200 1.0 ms\r\x00"
    req = request(forged, [])
    caplog.set_level(logging.INFO, logs.ACCESS_LOGGER)
    seen = RequestTelemetry(req, direct=(FID, None))
    await req.send({"type": "http.response.start", "status": 200, "headers": []})
    seen.close()
    (record,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert line.startswith("POST /x\\x0a2026-12-03 12:00:00,000 INFO") and "\\x0d\\x00 direct 200" in line
    assert record.fields["path"] == forged  # type: ignore[attr-defined]  # JSON lines escape it themselves
