"""shared/revocations.py: the broadcast survives its encoding, names only ids, and `covers` matches what
a gateway must drop; invocation/revocations.py finds the open invocations an event covers."""

from __future__ import annotations

import pytest

from fnplane.invocation.revocations import OpenInvocations
from fnplane.shared import errors, revocations
from fnplane.shared.models.access import AccessGrant
from fnplane.shared.revocations import Held


def test_round_trip_and_wire_names() -> None:
    event = revocations.revoked(key_ids=["k1"], client_ids=["c1"], nca_ids=["a"], function_ids=["f"])
    data = revocations.encode(event)
    assert data == b'{"keyIds":["k1"],"clientIds":["c1"],"ncaIds":["a"],"functionIds":["f"]}'
    assert revocations.decode(data) == event
    assert revocations.decode(revocations.encode(revocations.EVERYTHING)).everything
    assert revocations.revoked().empty and not event.empty


@pytest.mark.parametrize("data", [b"", b"[]", b'{"keyIds": "k1"}', b'{"everything": "yes"}', b"\xff"])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(revocations.RevocationError):
        revocations.decode(data)


def test_covers() -> None:
    mine = Held("k1", None, "a")
    assert revocations.revoked(key_ids=["k1"]).covers(mine)
    assert not revocations.revoked(key_ids=["k2"]).covers(mine)
    assert revocations.revoked(nca_ids=["a"]).covers(mine)
    assert not revocations.revoked(client_ids=["k1"]).covers(mine)  # a client id is not a key id
    assert revocations.revoked(function_ids=["f"]).covers(mine._replace(function_id="f"))
    assert not revocations.revoked(function_ids=["f"]).covers(mine._replace(function_id="g"))
    assert not revocations.revoked(function_ids=["f"]).covers(mine)
    assert revocations.EVERYTHING.covers(mine)


def test_forget_covered() -> None:
    cache = {"a": Held("k1", None, "acct"), "b": Held(None, "bot", "acct"), "c": Held("k2", None, "other")}
    revocations.forget_covered(cache, revocations.revoked(key_ids=["k1"]), lambda _, held: held)
    assert set(cache) == {"b", "c"}
    revocations.forget_covered(cache, revocations.revoked(nca_ids=["acct"]), lambda _, held: held)
    assert set(cache) == {"c"}
    revocations.forget_covered(cache, revocations.EVERYTHING, lambda _, held: held)
    assert cache == {}


class Open:
    def __init__(self, key_id: str | None, client_id: str | None, nca_id: str, function_id: str) -> None:
        self.grant = AccessGrant(ncaId=nca_id, subject="s", scopes=[], keyId=key_id, clientId=client_id)
        self.bearer = "b"
        self.function_id = function_id
        self.version_id = "v"
        self.revoked: errors.FnplaneError | None = None

    def revoke(self, error: errors.FnplaneError) -> None:
        self.revoked = error


def test_open_invocations_by_credential() -> None:
    registry = OpenInvocations()
    a = Open("k1", None, "acct", "f1")
    b = Open("k1", None, "acct", "f2")
    c = Open(None, "bot", "other", "f1")
    for invocation in (a, b, c):
        registry.add(invocation)
    assert len(registry) == 3
    assert set(registry.covered(revocations.revoked(key_ids=["k1"]))) == {a, b}
    assert registry.covered(revocations.revoked(client_ids=["bot"])) == [c]
    assert set(registry.covered(revocations.revoked(function_ids=["f1"]))) == {a, c}
    assert registry.covered(revocations.revoked(nca_ids=["other"])) == [c]
    assert len(registry.covered(revocations.EVERYTHING)) == 3
    registry.discard(a)
    registry.discard(a)  # twice is harmless
    assert registry.covered(revocations.revoked(key_ids=["k1"])) == [b]
    registry.discard(b)
    registry.discard(c)
    assert len(registry) == 0 and registry.covered(revocations.EVERYTHING) == []
