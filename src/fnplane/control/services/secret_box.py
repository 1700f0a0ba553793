"""Function secrets at rest: `SecretBox` seals each value with AES-256-GCM before it is stored.

`function_versions.secrets` holds `[{"name": ..., "sealed": ...}]`. The key is an HKDF-SHA256 of the
key-hash secret (`ControlSettings.key_hash_secret`, kept outside the database) for this use only, so a
copy of the database does not reveal the values. Names stay readable: NVCF shows them (never the
values) on the detailed GET of a version.

The version id and the secret's name are the associated data of each seal: a sealed value copied into
another version's row, or under another name, does not open, so whoever can write the table still
cannot have an agent decrypt another tenant's secret into a function of their own. Values are opened
only when they go into an instance's environment (`services.instances`); an entry that does not open
(another secret, a tampered or a plaintext row) is left out of the environment with one warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fnplane.shared.models.functions import SecretDto

logger = logging.getLogger(__name__)

# the format of a sealed value; another prefix is a value this code cannot open
_PREFIX = "aesgcm1:"
_NONCE_BYTES = 12


def secrets_key(key_hash_secret: str) -> bytes:
    """The AES-256 key of the stored function secrets: HKDF-SHA256 of the key-hash secret, this use only."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fnplane function-secrets")
    return kdf.derive(key_hash_secret.encode())


def _associated_data(version_id: str, name: str) -> bytes:
    # JSON keeps the two parts apart whatever characters they contain
    return json.dumps([version_id, name]).encode()


class SecretBox:
    def __init__(self, key_hash_secret: str) -> None:
        self._aead = AESGCM(secrets_key(key_hash_secret))
        self._warned: set[tuple[str, str]] = set()  # (version, name) already warned about

    def seal(self, version_id: str, name: str, value: str, *, is_json: bool = False) -> dict[str, Any]:
        """The stored entry of one secret; `is_json`: `value` is the JSON text of an object (NVCF
        secrets may be objects), which the secrets file gives back as that object."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), _associated_data(version_id, name))
        entry: dict[str, Any] = {"name": name, "sealed": _PREFIX + base64.b64encode(nonce + sealed).decode()}
        if is_json:
            entry["json"] = True
        return entry

    def seal_secrets(self, version_id: str, secrets: Iterable[SecretDto]) -> list[dict[str, Any]]:
        """The stored entries of a request's secrets (strings, or objects kept as their JSON text)."""
        return [self.seal_secret(version_id, secret) for secret in secrets]

    def seal_secret(self, version_id: str, secret: SecretDto) -> dict[str, Any]:
        return self.seal(version_id, secret.name, secret.as_text(), is_json=not isinstance(secret.value, str))

    def open_values(self, version_id: str, entries: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
        """name -> value of every entry that opens, an object where the secret was one (secrets.json)."""
        values: dict[str, Any] = {}
        for entry in entries or ():
            text = self.open(version_id, entry)
            if text is None:
                continue
            values[str(entry["name"])] = json.loads(text) if entry.get("json") else text
        return values

    def open(self, version_id: str, entry: dict[str, Any]) -> str | None:
        """The plaintext of a stored entry; None (warned once) if this box cannot open it."""
        name = str(entry.get("name", ""))
        value = self._open(version_id, name, entry.get("sealed"))
        if value is None and (version_id, name) not in self._warned:
            self._warned.add((version_id, name))
            logger.warning(
                "secret %r of function version %s is not sealed with this key-hash secret; "
                "it is left out of the instance environment (PUT it again to fix)",
                name,
                version_id,
            )
        return value

    def open_all(self, version_id: str, entries: Iterable[dict[str, Any]] | None) -> dict[str, str]:
        """name -> plaintext of every entry that opens."""
        opened = {}
        for entry in entries or ():
            value = self.open(version_id, entry)
            if value is not None:
                opened[str(entry["name"])] = value
        return opened

    def _open(self, version_id: str, name: str, sealed: Any) -> str | None:
        if not isinstance(sealed, str) or not sealed.startswith(_PREFIX):
            return None
        try:
            raw = base64.b64decode(sealed[len(_PREFIX) :], validate=True)
            plain = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(version_id, name)
            )
            return plain.decode()
        except (binascii.Error, InvalidTag, ValueError):
            # ValueError also covers a too-short blob and bytes that are not UTF-8
            return None
