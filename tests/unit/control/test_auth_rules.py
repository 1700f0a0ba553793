"""Pure auth rules: key format and hashing, principals from keys, delegation, signing-key thumbprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fnplane.control.auth.api_keys import ApiKeyService, authorizations_for, wire_time
from fnplane.control.auth.authenticator import key_status, principal_for_key
from fnplane.control.auth.credentials import is_api_key, key_hint, keyed_hash, new_api_key
from fnplane.control.auth.principal import Principal, ResourceGrant
from fnplane.control.auth.signing import public_jwk, thumbprint
from fnplane.control.db.repositories.api_keys import ApiKeyRecord
from fnplane.shared.errors import ForbiddenError
from fnplane.shared.scopes import INVOKE_FUNCTION, LIST_FUNCTIONS


def _record(**overrides: object) -> ApiKeyRecord:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "key_id": "k1",
        "key_hash": "h",
        "hint": "nvapi-**********abc",
        "nca_id": "acct",
        "owner_id": "alice",
        "description": "d",
        "authorizations": authorizations_for([LIST_FUNCTIONS]),
        "status": "ACTIVE",
        "created_at": now,
        "expires_at": now + timedelta(days=1),
    }
    values.update(overrides)
    return ApiKeyRecord(**values)  # type: ignore[arg-type]


def test_api_keys_are_nvapi_prefixed_32_random_bytes() -> None:
    key = new_api_key()
    assert key.startswith("nvapi-") and len(key) == 6 + 43
    assert is_api_key(key) and not is_api_key("eyJ...")
    assert new_api_key() != key
    assert key_hint(key) == "nvapi-**********" + key[-3:]


def test_keyed_hash_depends_on_the_secret() -> None:
    assert keyed_hash("s1", "v") == keyed_hash("s1", "v")
    assert keyed_hash("s1", "v") != keyed_hash("s2", "v")
    assert len(keyed_hash("s1", "v")) == 64


def test_key_status_derives_expired() -> None:
    assert key_status(_record()) == "ACTIVE"
    assert key_status(_record(expires_at=datetime.now(UTC) - timedelta(seconds=1))) == "EXPIRED"
    assert key_status(_record(status="SUSPENDED")) == "SUSPENDED"


def test_principal_is_the_union_of_policies() -> None:
    authorizations = {
        "policies": [
            {"scopes": [LIST_FUNCTIONS], "resources": [{"type": "account-functions", "id": "*"}]},
            {"scopes": [INVOKE_FUNCTION], "resources": [{"type": "function", "id": "f1/*"}]},
        ]
    }
    principal = principal_for_key(_record(authorizations=authorizations))
    assert principal.scopes == {LIST_FUNCTIONS, INVOKE_FUNCTION}
    assert principal.resources == (ResourceGrant("account-functions", "*"), ResourceGrant("function", "f1/*"))
    assert principal.subject == "alice" and principal.extra["key_id"] == "k1"


def _caller(scopes: set[str], resources: tuple[ResourceGrant, ...] | None) -> Principal:
    return Principal(
        nca_id="acct", subject="alice", kind="api_key", scopes=frozenset(scopes), resources=resources
    )


@pytest.mark.parametrize(
    ("held", "wanted", "allowed"),
    [
        (None, [{"type": "account-functions", "id": "*"}], True),
        ((ResourceGrant("account-functions", "*"),), [{"type": "account-functions", "id": "*"}], True),
        ((ResourceGrant("account-functions", "*"),), [{"type": "authorized-functions", "id": "*"}], False),
        ((ResourceGrant("account-functions", "*"),), [{"type": "function", "id": "f/v"}], True),
        ((ResourceGrant("function", "f/*"),), [{"type": "function", "id": "f/v"}], True),
        ((ResourceGrant("function", "f/v"),), [{"type": "function", "id": "f/*"}], False),
        ((ResourceGrant("function", "f/v"),), [{"type": "function", "id": "g/v"}], False),
    ],
)
def test_delegation_of_resources(
    held: tuple[ResourceGrant, ...] | None, wanted: list[dict[str, str]], allowed: bool
) -> None:
    caller = _caller({LIST_FUNCTIONS}, held)
    document = authorizations_for([LIST_FUNCTIONS], wanted)
    if allowed:
        ApiKeyService._check_delegation(caller, document, "grant")
    else:
        with pytest.raises(ForbiddenError):
            ApiKeyService._check_delegation(caller, document, "grant")


def test_delegation_of_scopes() -> None:
    with pytest.raises(ForbiddenError, match="invoke_function"):
        ApiKeyService._check_delegation(
            _caller({LIST_FUNCTIONS}, None), authorizations_for([INVOKE_FUNCTION]), "grant"
        )


def test_wire_time_has_milliseconds() -> None:
    assert wire_time(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"


def test_kid_is_a_stable_rfc7638_thumbprint() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key.public_key())
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert thumbprint(jwk) == thumbprint(dict(reversed(list(jwk.items()))))
    assert len(thumbprint(jwk)) == 43
