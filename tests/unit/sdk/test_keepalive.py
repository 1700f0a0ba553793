"""The PING decisions of one connection (`Liveness`), with the clock handed in."""

from __future__ import annotations

import httpcore
import pytest
from hyperframe.frame import Frame, PingFrame

from fnplane.sdk.keepalive import HTTP2_PREFACE, Keepalive, Liveness, ping_frame

KEEPALIVE = Keepalive(interval_s=2.0, ack_timeout_s=1.0)


def waiting(now: float = 0.0) -> Liveness:
    """An HTTP/2 connection with a reader waiting for an answer, last bytes at `now`."""
    liveness = Liveness(KEEPALIVE, now)
    liveness.http2 = True
    liveness.readers = 1
    return liveness


def test_a_silent_connection_with_a_waiting_reader_is_pinged_after_the_interval() -> None:
    liveness = waiting()
    assert liveness.decide(1.9) is None
    assert liveness.decide(2.0) == "ping"


def test_bytes_after_the_ping_prove_it_alive_and_restart_the_interval() -> None:
    liveness = waiting()
    liveness.ping_sent_at = 2.0
    assert liveness.decide(2.5) is None  # waiting for the ACK
    liveness.received(b"", 2.55)  # an empty read is no sign of life
    assert liveness.ping_sent_at == 2.0
    liveness.received(b"ack", 2.6)
    assert liveness.ping_sent_at is None
    assert liveness.decide(4.5) is None
    assert liveness.decide(4.7) == "ping"


def test_no_ack_within_the_timeout_closes_the_connection() -> None:
    liveness = waiting()
    liveness.ping_sent_at = 2.0
    assert liveness.decide(2.99) is None
    assert liveness.decide(3.0) == "close"


def test_http1_connections_and_connections_nobody_reads_are_left_alone() -> None:
    http1 = waiting()
    http1.http2 = False
    assert http1.decide(100.0) is None
    idle = waiting()
    idle.readers = 0
    assert idle.decide(100.0) is None
    # a PING whose ACK nobody reads is forgotten, not held against the connection
    idle.ping_sent_at = 2.0
    assert idle.decide(100.0) is None and idle.ping_sent_at is None


def test_a_dead_connection_is_not_pinged_again() -> None:
    liveness = waiting()
    liveness.dead = "gone"
    assert liveness.decide(100.0) is None


def test_the_first_write_tells_http2() -> None:
    h2 = Liveness(KEEPALIVE, 0.0)
    h2.writing(HTTP2_PREFACE + b"settings")
    h2.writing(b"GET / HTTP/1.1")  # later writes do not matter
    http1 = Liveness(KEEPALIVE, 0.0)
    http1.writing(b"GET / HTTP/1.1\r\n")
    assert h2.http2 and not http1.http2


def test_a_read_of_a_connection_given_up_on_fails_with_the_reason() -> None:
    liveness = waiting()
    liveness.readers = 0
    with liveness.reading():
        assert liveness.readers == 1
    liveness.dead = "no HTTP/2 PING ACK"
    with pytest.raises(httpcore.ReadError, match="no HTTP/2 PING ACK"), liveness.reading():
        pass  # the socket's shutdown ends the read with b""
    with pytest.raises(httpcore.ReadError, match="no HTTP/2 PING ACK"), liveness.reading():
        raise OSError("bad file descriptor")
    assert liveness.readers == 0


def test_the_ping_frame_is_an_h2_ping_on_stream_0() -> None:
    frame, length = Frame.parse_frame_header(memoryview(ping_frame()[:9]))
    assert isinstance(frame, PingFrame) and frame.stream_id == 0 and length == 8
    assert "ACK" not in frame.flags


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Keepalive(interval_s=0)
    assert 0.02 <= Keepalive(0.5, 1.0).tick_s <= 0.5
    assert Keepalive().tick_s == 1.0
