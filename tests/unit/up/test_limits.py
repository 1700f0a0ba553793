"""The per-credential limiter's key: one credential, one count, however its header is written."""

from __future__ import annotations

from fnplane.up.limits import credential_key


def scope(*authorizations: bytes) -> dict[str, object]:
    return {"headers": [(b"authorization", a) for a in authorizations], "client": ("10.0.0.1", 5000)}


def test_spellings_of_one_bearer_are_one_credential():
    key = credential_key(scope(b"Bearer nvapi-k"))
    # each spelling used to be a key of its own, so one credential could hold any number of slots
    for spelling in (b"bearer nvapi-k", b"BEARER  nvapi-k", b"Bearer nvapi-k ", b"Bearer   nvapi-k"):
        assert credential_key(scope(spelling)) == key
    assert credential_key(scope(b"Bearer nvapi-other")) != key


def test_the_first_authorization_header_counts_and_no_header_is_the_address():
    assert credential_key(scope(b"Bearer nvapi-k", b"Bearer nvapi-x")) == credential_key(
        scope(b"Bearer nvapi-k")
    )
    assert credential_key(scope()) == b"client:10.0.0.1"
    assert credential_key(scope(b"Basic abc")) == b"Basic abc"
