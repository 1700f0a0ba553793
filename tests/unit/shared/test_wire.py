"""shared/wire.py: every message of the request path survives its own encoding, and malformed input is
refused with WireError (never a crash deeper in the gateway or the worker)."""

from __future__ import annotations

import pytest

from fnplane.shared import wire


def envelope(**overrides) -> wire.Envelope:
    fields = {
        "request_id": "6f2c0a4e-3b1d-4a59-9b7e-2d0c8c1f0a11",
        "function_id": "fid",
        "version_id": "vid",
        "nca_id": "nca",
        "mode": wire.InvocationMode.PEXEC,
        "method": "POST",
        "path": "/echo?x=1",
        "headers": [("Content-Type", "application/json"), ("X-Repeated", "a"), ("X-Repeated", "b")],
        "reply_to": "fnplane.gw.g.r.rid",
        "body_from": "fnplane.gw.g.b.rid",
        "request_time": 1700000000.25,
        "poll_s": 60.0,
        "expires_at": 1700003600.25,
        "assets": [wire.AssetReference("a1", "assets/nca/a1", "image/png")],
        "heartbeat_s": 6.5,
        "body_length": 40000,
        "body_more": True,
    }
    fields.update(overrides)
    return wire.Envelope(**fields)


def test_the_envelope_round_trips_with_repeated_headers_and_assets():
    original = envelope()
    headers = wire.encode_request(original)
    assert headers[wire.HDR_MSG_ID] == original.request_id  # JetStream de-duplicates by request id
    assert wire.decode_request(headers) == original
    assert wire.decode_trace(headers) is None  # tracing off: no trace context travels


def test_a_queued_request_carries_the_trace_context_to_continue():
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = {"traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE", "baggage": "not=carried"}
    headers = wire.encode_request(envelope(), trace)
    assert headers[wire.HDR_TRACEPARENT] == traceparent
    assert wire.decode_trace(headers) == {"traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"}
    assert wire.decode_request(headers) == envelope()
    only_parent = wire.encode_request(envelope(), {"traceparent": traceparent})
    assert wire.decode_trace(only_parent) == {"traceparent": traceparent}


@pytest.mark.parametrize(
    "headers", [None, {}, {wire.HDR_ENVELOPE: "{"}, {wire.HDR_ENVELOPE: '{"requestId": 1}'}]
)
def test_a_malformed_envelope_is_a_wire_error(headers):
    with pytest.raises(wire.WireError):
        wire.decode_request(headers)


def test_response_messages_carry_their_kind_and_attempt():
    head = wire.Head(200, [("Content-Type", "text/plain")], window=16, end=False)
    decoded = wire.decode_response(wire.encode_head(head, 2), b"first")
    assert decoded == wire.HeadMessage("2", head, b"first")
    assert wire.decode_response(wire.kind_header(wire.Kind.DATA, 2), b"x") == wire.ChunkMessage("2", b"x")
    assert wire.decode_response(wire.kind_header(wire.Kind.ALIVE, 3), b"") == wire.AliveMessage("3")
    assert wire.decode_response(wire.encode_end(2), b"") == wire.EndMessage("2", None)
    broken = wire.decode_response(wire.encode_end(2, "cut\r\noff"), b"")
    assert broken == wire.EndMessage("2", "cut  off")  # header values hold no line breaks


def test_a_large_result_is_a_head_field_not_a_header_the_function_could_send():
    head = wire.Head(302, [("Fnplane-Large-Result", "someone-else")], end=True, large_result=True)
    decoded = wire.decode_response(wire.encode_head(head, 1), b"")
    assert isinstance(decoded, wire.HeadMessage) and decoded.head.large_result


@pytest.mark.parametrize(
    "headers", [None, {"Fnplane-Kind": "nonsense 1"}, {"Fnplane-Kind": "head 1", "Fnplane-Head": "[]"}]
)
def test_a_malformed_response_message_is_a_wire_error(headers):
    with pytest.raises(wire.WireError):
        wire.decode_response(headers, b"")


def test_credits_batch_a_quarter_of_the_window():
    assert wire.credit_batch(16) == 4
    assert wire.credit_batch(1) == 1
    assert wire.decode_credit(wire.encode_credit(1)) == 1
    assert wire.decode_credit(wire.encode_credit(4)) == 4
    assert wire.decode_credit(b"junk") == 1


def test_body_pulls_and_refusals():
    assert wire.decode_body_pull(wire.encode_body_pull(32768)) == (32768, None)
    assert wire.decode_body_pull(wire.encode_body_pull(32768, 5.0)) == (32768, 5.0)
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(wire.WireError, match="bad wait"):
            wire.decode_body_pull({wire.HDR_OFFSET: "1", wire.HDR_WAIT: bad})
    with pytest.raises(wire.WireError):
        wire.decode_body_pull({wire.HDR_OFFSET: "-1"})
    assert wire.decode_body_reply(*wire.encode_body_chunk(b"abc", eof=True)) == wire.BodyChunk(b"abc", True)
    assert wire.decode_body_reply(*wire.encode_body_chunk(b"abc", eof=False)) == wire.BodyChunk(b"abc", False)
    with pytest.raises(wire.WireError, match="client gone"):
        wire.decode_body_reply(*wire.encode_body_refusal("client gone"))


def test_the_status_record_round_trips():
    record = wire.StatusRecord(
        request_id="r",
        function_id="f",
        version_id="v",
        nca_id="n",
        status=wire.RequestStatus.FULFILLED,
        percent_complete=100,
        partial_response={"step": 3},
        response=wire.StoredResponse(200, [("content-type", "application/json")], body_b64="e30="),
    )
    assert wire.decode_status(wire.encode_status(record)) == record
    with pytest.raises(wire.WireError):
        wire.decode_status(b'{"requestId": "r"}')


def test_cancel_names_the_request():
    assert wire.decode_cancel(wire.encode_cancel("rid")) == "rid"


@pytest.mark.parametrize(
    ("code", "status"),
    [(200, "fulfilled"), (302, "fulfilled"), (202, "in-progress"), (404, "errored"), (500, "errored")],
)
def test_nvcf_status(code, status):
    assert wire.nvcf_status(code).value == status


def test_a_detached_envelope_keeps_its_idempotency_key_and_old_envelopes_decode_as_attached():
    env = envelope(detached=True, idempotency="nca.abc")
    decoded = wire.decode_request(wire.encode_request(env))
    assert decoded.detached and decoded.idempotency == "nca.abc"
    plain = wire.decode_request(wire.encode_request(envelope()))
    assert not plain.detached and plain.idempotency is None
    assert "detached" not in wire.encode_request(envelope())[wire.HDR_ENVELOPE]  # no bytes when unused


def test_an_explicit_cancel_is_told_from_a_disconnect_cancel():
    headers, data = wire.encode_explicit_cancel("rid-1")
    assert wire.decode_cancel(data) == "rid-1" and wire.is_explicit_cancel(headers)
    assert not wire.is_explicit_cancel(None) and not wire.is_explicit_cancel({})


def test_a_rejected_record_is_final_and_drops_the_progress_and_result():
    record = wire.StatusRecord(
        "rid", "fid", "vid", "nca", wire.RequestStatus.IN_PROGRESS, percent_complete=40, idempotency="k"
    )
    assert not record.is_final
    cancelled = wire.rejected(record)
    assert cancelled.is_final and cancelled.status is wire.RequestStatus.REJECTED
    assert cancelled.percent_complete is None and cancelled.idempotency == "k"
    assert wire.decode_status(wire.encode_status(cancelled)) == cancelled
    pending = wire.StatusRecord("rid", "fid", "vid", "nca", wire.RequestStatus.PENDING_EVALUATION)
    assert not pending.is_final


def test_idempotency_records_round_trip_and_malformed_ones_are_refused():
    record = wire.IdempotencyRecord(
        "fp",
        "rid",
        "fid",
        "vid",
        "nca",
        status=wire.RequestStatus.FULFILLED,
        response=wire.StoredResponse(200, [("Content-Type", "application/json")], body_b64="e30="),
    )
    assert wire.decode_idempotency(wire.encode_idempotency(record)) == record
    with pytest.raises(wire.WireError):
        wire.decode_idempotency(b'{"fingerprint": 1}')


# --- gRPC sessions -------------------------------------------------------------------------------


def test_grpc_metadata_keeps_text_and_binary_values() -> None:
    metadata = [("x-tag", "t1"), ("x-raw-bin", b"\x00\xff"), ("x-tag", "t2")]
    encoded = wire.encode_metadata(metadata)
    assert all(isinstance(value, str) for _, value in encoded)
    assert wire.decode_metadata(encoded) == metadata
    with pytest.raises(wire.WireError):
        wire.decode_metadata([("x-bad-bin", "not base64!")])


def test_every_session_event_survives_its_encoding() -> None:
    call = wire.GrpcCall(
        "c1", "/pkg.Svc/Method", wire.encode_metadata([("x-a", "1")]), "fnplane.gw.g.r.c1", 2.5, window=4
    )
    assert wire.decode_session_event(wire.encode_call_open(call), b"") == wire.CallOpened(call)
    data = wire.call_header(wire.Kind.DATA, "c1")
    assert wire.decode_session_event(data, b"msg") == wire.CallData("c1", b"msg", False)
    assert wire.decode_session_event(wire.more_header(data), b"part") == wire.CallData("c1", b"part", True)
    assert wire.decode_session_event(wire.call_header(wire.Kind.END, "c1"), b"") == wire.CallEnded("c1")
    assert wire.decode_session_event(wire.call_header(wire.Kind.CANCEL, "c1"), b"") == wire.CallCancelled(
        "c1"
    )
    assert wire.decode_session_event(wire.SESSION_ALIVE, b"") == wire.SessionAlive()
    assert wire.decode_session_event(wire.SESSION_CLOSE, b"") == wire.SessionClosed()
    with pytest.raises(wire.WireError):
        wire.decode_session_event({wire.HDR_KIND: "open", wire.HDR_GRPC_CALL: "{"}, b"")
    with pytest.raises(wire.WireError):
        wire.decode_session_event({wire.HDR_KIND: "bogus"}, b"")


def test_the_worker_side_of_a_session_survives_its_encoding() -> None:
    accept = wire.decode_response(
        wire.encode_session_accept(wire.SessionAccept("fnplane.wk.i.n.s.sid"), 2), b""
    )
    assert accept == wire.SessionMessage("2", wire.SessionAccept("fnplane.wk.i.n.s.sid"))
    trailer = wire.GrpcTrailer(9, "not now", wire.encode_metadata([("x-why-bin", b"\x01")]))
    end = wire.decode_response(wire.encode_grpc_end(2, trailer), b"")
    assert end == wire.EndMessage("2", None, trailer)
    headers, payload = wire.encode_credit_message(2, 3)
    assert wire.decode_response(headers, payload) == wire.CreditMessage("2", 3)
    piece = wire.decode_response(wire.more_header(wire.kind_header(wire.Kind.DATA, 2)), b"p")
    assert piece == wire.ChunkMessage("2", b"p", True)
    assert wire.session_refusal(wire.encode_session_refusal("gone\nnow")) == "gone now"
    assert wire.session_refusal(None) is None


def test_large_grpc_messages_travel_in_pieces_under_the_nats_payload_limit() -> None:
    message = bytes(range(256)) * 4096  # 1 MiB
    pieces = wire.fragments(message)
    assert len(pieces) == 4 and all(len(p) <= wire.GRPC_FRAGMENT_BYTES for p in pieces)
    assert b"".join(pieces) == message
    assert wire.fragments(b"") == [b""]


def test_the_undeploy_notice_round_trips_and_refuses_garbage():
    event = wire.Undeployed(function_id="f-1", version_id="v-1")
    data = wire.encode_undeployed(event)
    assert b'"functionVersionId":"v-1"' in data
    assert wire.decode_undeployed(data) == event
    for garbage in (b"", b"{}", b"[1]", b'{"functionId": 1, "functionVersionId": "v"}'):
        with pytest.raises(wire.WireError):
            wire.decode_undeployed(garbage)
