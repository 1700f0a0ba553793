"""NATS decentralised auth (JWT v2 on nkeys): the operator, the accounts and their users.

    operator (self-signed)          trusts the accounts below; names the system account
      account SYS                   the server's own (monitoring, `$SYS`), no users of ours
      account FNPLANE               every component; JetStream on; users signed by its signing key
        user <component>            one per component (gateway, control, agent) and per instance (worker)

The server learns the operator and the two account JWTs from its config (`resolver: MEMORY` with
`resolver_preload`); a user JWT is only checked against its account's signing keys when it connects,
so minting a credential for a new worker needs no server reload.

Why not PyPI `nats-jwt`: its 0.2.x says it is "not well-tested and in the development stage" and
pins four extra packages (dacite, dataclasses-json, pycryptodome, pytz < 2025). A NATS JWT is a
standard compact JWS (`ed25519-nkey`) over a small JSON document; `nkeys` (nats-py's own) does the keys
and signatures, the claims are written here (nats-io/jwt v2's field names).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import nkeys

from fnplane.shared.permissions import Permissions

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
# JetStream, connections and subscriptions unlimited for the application account (-1: no limit)
_UNLIMITED_ACCOUNT = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
    "max_ack_pending": -1,
}


class CredentialsError(Exception):
    """A seed or a credentials file that cannot be used."""


def new_seed(prefix: int) -> str:
    """A fresh nkey seed of the given kind (nkeys.PREFIX_BYTE_OPERATOR / _ACCOUNT / _USER)."""
    return bytes(nkeys.encode_seed(os.urandom(32), prefix)).decode()


def key_pair(seed: str) -> nkeys.KeyPair:
    try:
        return nkeys.from_seed(bytearray(seed.strip().encode()))
    except (nkeys.NkeysError, ValueError, TypeError) as exc:
        raise CredentialsError(f"not an nkey seed: {exc!r}") from None


def public_key(seed: str) -> str:
    return bytes(key_pair(seed).public_key).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(issuer_seed: str, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT v2 signed by `issuer_seed` about `subject` (a public nkey)."""
    issuer = key_pair(issuer_seed)
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": bytes(issuer.public_key).decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    # jti: the base32 SHA-256 of the claims without it (nats-io/jwt's ClaimsData.hash)
    digest = hashlib.sha256(json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = issuer.sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies; this is for reading what we issued)."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError) as exc:
        raise CredentialsError(f"not a JWT: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class UserCredential:
    """A user JWT and the seed that proves it (what a `.creds` file holds)."""

    jwt: str
    seed: str

    def creds_file(self) -> str:
        """The standard `.creds` text (nats-py `user_credentials=`, the `nats` CLI, `nsc`)."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seed}\n"
            "------END USER NKEY SEED------\n"
        )

    @classmethod
    def parse(cls, text: str) -> UserCredential:
        """From `.creds` text; CredentialsError when it holds no JWT or no seed."""
        lines = [line.strip() for line in text.splitlines()]
        jwt = next((line for line in lines if line.startswith("eyJ")), "")
        seed = next((line for line in lines if line.startswith("SU")), "")
        if not jwt or not seed:
            raise CredentialsError("a NATS credentials file holds a user JWT and a user seed (SU...)")
        key_pair(seed)
        return cls(jwt, seed)

    def sign(self, nonce: str) -> bytes:
        """The answer to the server's nonce (nats-py's `signature_cb`)."""
        return base64.b64encode(key_pair(self.seed).sign(nonce.encode()))


def user_claims(permissions: Permissions, issuer_account: str | None) -> dict[str, Any]:
    nats: dict[str, Any] = {
        "type": "user",
        "pub": {"allow": list(permissions.publish)} if permissions.publish else {},
        "sub": {"allow": list(permissions.subscribe)} if permissions.subscribe else {},
        "subs": -1,
        "data": -1,
        "payload": -1,
    }
    if permissions.deny_publish:
        nats["pub"]["deny"] = list(permissions.deny_publish)
    if permissions.deny_subscribe:
        nats["sub"]["deny"] = list(permissions.deny_subscribe)
    if permissions.max_responses:
        nats["resp"] = {"max": permissions.max_responses, "ttl": 0}
    if issuer_account:
        nats["issuer_account"] = issuer_account
    return nats


class UserIssuer:
    """Mints user credentials of one account with the account's signing key (no server reload)."""

    def __init__(self, signing_seed: str, account: str | None = None) -> None:
        self._signing_seed = signing_seed
        public_key(signing_seed)  # a CredentialsError now rather than at the first mint
        # the account's identity key, when the signing key is not the identity key itself
        self._account = account

    def issue(self, name: str, permissions: Permissions) -> UserCredential:
        seed = new_seed(nkeys.PREFIX_BYTE_USER)
        account = self._account if self._account and self._account != public_key(self._signing_seed) else None
        jwt = encode_jwt(self._signing_seed, public_key(seed), name, user_claims(permissions, account))
        return UserCredential(jwt, seed)


@dataclass(frozen=True, slots=True)
class OperatorKeys:
    """The seeds of a self-contained NATS trust chain (kept under DIR by `fnplane up`)."""

    operator: str
    system_account: str
    account: str
    account_signing: str

    @classmethod
    def generate(cls) -> OperatorKeys:
        return cls(
            operator=new_seed(nkeys.PREFIX_BYTE_OPERATOR),
            system_account=new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
            account=new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
            account_signing=new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "operator": self.operator,
                "systemAccount": self.system_account,
                "account": self.account,
                "accountSigning": self.account_signing,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> OperatorKeys:
        try:
            raw = json.loads(text)
            keys = cls(raw["operator"], raw["systemAccount"], raw["account"], raw["accountSigning"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialsError(f"unreadable NATS keys: {exc!r}") from None
        for seed in (keys.operator, keys.system_account, keys.account, keys.account_signing):
            key_pair(seed)
        return keys

    @property
    def account_public_key(self) -> str:
        return public_key(self.account)

    def issuer(self) -> UserIssuer:
        return UserIssuer(self.account_signing, self.account_public_key)

    def server_config(self) -> str:
        """The nats-server config fragment: the trusted operator and the accounts it preloads."""
        operator_pub = public_key(self.operator)
        system_pub = public_key(self.system_account)
        account_pub = self.account_public_key
        operator_jwt = encode_jwt(
            self.operator,
            operator_pub,
            "fnplane",
            {"type": "operator", "system_account": system_pub},
        )
        system_jwt = encode_jwt(
            self.operator,
            system_pub,
            "SYS",
            {"type": "account", "limits": {"subs": -1, "data": -1, "payload": -1, "conn": -1}},
        )
        account_jwt = encode_jwt(
            self.operator,
            account_pub,
            "FNPLANE",
            {
                "type": "account",
                "limits": _UNLIMITED_ACCOUNT,
                "signing_keys": [public_key(self.account_signing)],
                "default_permissions": {"pub": {}, "sub": {}},
            },
        )
        return (
            f"operator: {operator_jwt}\n"
            f"system_account: {system_pub}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {system_pub}: {system_jwt}\n"
            f"  {account_pub}: {account_jwt}\n"
            "}\n"
        )
