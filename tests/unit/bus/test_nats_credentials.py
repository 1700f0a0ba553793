"""NATS JWT v2 credentials on nkeys: what the server checks (signature, issuer chain, claims)."""

from __future__ import annotations

import base64

import nacl.signing
import pytest

from fnplane.bus.credentials import CredentialsError, OperatorKeys, UserCredential, decode_claims, public_key
from fnplane.shared import permissions


def _verify(token: str, issuer: str) -> None:
    """The JWT's signature checks out against the public key `issuer` (what nats-server does)."""
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    # a public nkey: base32 of a prefix byte, the 32-byte ed25519 key and a CRC-16
    key = base64.b32decode(issuer + "=" * (-len(issuer) % 8))[1:33]
    nacl.signing.VerifyKey(key).verify(f"{header}.{payload}".encode(), raw)


def test_a_worker_credential_is_signed_by_the_account_signing_key_with_its_version_grants():
    keys = OperatorKeys.generate()
    credential = keys.issuer().issue("worker-i1", permissions.worker("v1", "i1"))
    claims = decode_claims(credential.jwt)
    signing = public_key(keys.account_signing)
    assert claims["iss"] == signing and claims["sub"] == public_key(credential.seed)
    assert claims["nats"]["issuer_account"] == keys.account_public_key
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2
    assert "fnplane.cancel.v1" in claims["nats"]["sub"]["allow"]
    assert not any("fnplane.rq." in s or ">" == s for s in claims["nats"]["pub"]["allow"])
    assert claims["nats"]["resp"] == {"max": 1, "ttl": 0}
    _verify(credential.jwt, signing)


def test_the_server_config_trusts_the_operator_and_preloads_both_accounts():
    keys = OperatorKeys.generate()
    config = keys.server_config()
    operator_jwt = config.split("operator: ", 1)[1].split("\n", 1)[0]
    assert decode_claims(operator_jwt)["nats"]["system_account"] == public_key(keys.system_account)
    _verify(operator_jwt, public_key(keys.operator))
    assert public_key(keys.system_account) in config and keys.account_public_key in config
    for seed in (keys.operator, keys.system_account, keys.account, keys.account_signing):
        assert seed not in config
    assert OperatorKeys.from_json(keys.to_json()) == keys


def test_a_creds_file_round_trips_and_a_broken_one_is_refused():
    credential = OperatorKeys.generate().issuer().issue("gateway", permissions.gateway())
    assert UserCredential.parse(credential.creds_file()) == credential
    with pytest.raises(CredentialsError):
        UserCredential.parse("-----BEGIN NATS USER JWT-----\nnot a jwt\n")
    with pytest.raises(CredentialsError):
        OperatorKeys.from_json('{"operator": "SOxx"}')
