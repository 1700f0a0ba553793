"""ES256 JWTs signed with our own keys: `TokenSigner` (mint, verify, JWKS).

Keys live in the `signing_keys` table, so tokens minted before a restart still verify after it, and
every control-plane process sharing a database signs and verifies with the same keys. A key's `kid`
is its RFC 7638 thumbprint.

Private keys are stored encrypted (PKCS#8, AES-256) under a key derived from the key-hash secret
(`ControlSettings.key_hash_secret`, which `fnplane up` keeps in its home directory, not in the
database). A copy of the database alone therefore cannot mint tokens, and a key written into the
table by someone without the secret (or a plaintext one) is never loaded: it is skipped with a warning.

A token names its account (`ncaId`) and the epoch of its client's secret (`clientEpoch`: the client's
creation or last rotation, ClientRecord.epoch_us); the authenticator refuses it when either differs
from the client as stored now, so rotating a secret, or deleting a client id and creating it again
(even in another account), invalidates every token minted before. `aud` is our audience and checked,
`iss`, `exp`, `nbf` and `iat` are checked as PyJWT does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.clients import ClientRecord
from fnplane.control.db.repositories.signing_keys import SigningKeyRecord, SigningKeyRepository
from fnplane.shared.errors import UnauthorizedError

logger = logging.getLogger(__name__)

ALGORITHM = "ES256"
# a token whose kid we do not know makes us re-read the table at most this often
_RELOAD_INTERVAL_S = 1.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def storage_password(key_hash_secret: str) -> bytes:
    """The password of the stored private keys: HKDF-SHA256 of the key-hash secret, for this use only."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fnplane signing-key storage")
    return kdf.derive(key_hash_secret.encode())


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class _Key:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    active: bool

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_in: int
    scopes: list[str]


class TokenSigner:
    def __init__(
        self, repository: SigningKeyRepository, *, issuer: str, audience: str, key_hash_secret: str
    ) -> None:
        self._repository = repository
        self._issuer = issuer
        self._audience = audience
        self._password = storage_password(key_hash_secret)
        self._ignored: set[str] = set()  # kids already warned about
        self._keys: dict[str, _Key] = {}
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        records = await self._repository.list()
        keys = {}
        for record in records:
            private = self._decrypt(record)
            if private is not None:
                keys[record.kid] = _Key(record.kid, private, record.active)
        self._keys = keys
        self._loaded_at = time.monotonic()

    def _decrypt(self, record: SigningKeyRecord) -> ec.EllipticCurvePrivateKey | None:
        try:
            private = serialization.load_pem_private_key(record.private_key_pem.encode(), self._password)
        except (TypeError, ValueError):
            # TypeError: stored unencrypted; ValueError: another secret's key, or not a key at all
            private = None
        if isinstance(private, ec.EllipticCurvePrivateKey):
            return private
        if record.kid not in self._ignored:
            self._ignored.add(record.kid)
            logger.warning(
                "signing key %s is not an EC key encrypted with this key-hash secret; ignored", record.kid
            )
        return None

    async def ensure_key(self) -> bool:
        """Load the keys; create and persist one if there is none. True if one was created."""
        async with self._lock:
            await self._load()
            if any(key.active for key in self._keys.values()):
                return False
            private = ec.generate_private_key(ec.SECP256R1())
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self._password),
            ).decode()
            kid = thumbprint(public_jwk(private.public_key()))
            created = await self._repository.insert(SigningKeyRecord(kid, pem, True, now_utc()))
            await self._load()
            return created

    async def _active_key(self) -> _Key:
        if not any(k.active for k in self._keys.values()):
            await self.ensure_key()
        # the newest active key signs (the table is ordered by creation time)
        return [k for k in self._keys.values() if k.active][-1]

    async def mint(self, client: ClientRecord, scopes: Iterable[str], ttl_s: int) -> MintedToken:
        """A token for `client` (as stored now: its account and the epoch of its secret)."""
        subject = client.client_id
        key = await self._active_key()
        now = int(time.time())
        scope_list = sorted(set(scopes))
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "azp": subject,
            "aud": [self._audience],
            "iat": now,
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "exp": now + ttl_s,
            "scopes": scope_list,
            "ncaId": client.nca_id,
            "clientEpoch": client.epoch_us,
        }
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return MintedToken(token, ttl_s, scope_list)

    async def _key_for(self, kid: str) -> _Key | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > _RELOAD_INTERVAL_S:
            async with self._lock:
                await self._load()
            key = self._keys.get(kid)
        return key

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; UnauthorizedError for a bad, foreign or expired one."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise UnauthorizedError("Unauthorized access: malformed token") from error
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise UnauthorizedError("Unauthorized access: unsupported token")
        key = await self._key_for(kid)
        if key is None:
            raise UnauthorizedError("Unauthorized access: token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise UnauthorizedError("Unauthorized access: token expired") from error
        except jwt.InvalidTokenError as error:
            raise UnauthorizedError(f"Unauthorized access: invalid token ({error})") from error
        return claims

    async def jwks(self) -> dict[str, Any]:
        if not self._keys:
            await self.ensure_key()
        keys = []
        for key in self._keys.values():
            keys.append({**public_jwk(key.public_key), "kid": key.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": keys}
