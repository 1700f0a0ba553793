"""Secrets fnplane hands out and how they are stored: API keys and service-account secrets.

An API key is `nvapi-` + base64url(32 random bytes) (43 characters). Only its keyed hash
(HMAC-SHA256 with `ControlSettings.key_hash_secret`) is stored, plus a display hint
`nvapi-**********<last 3>` that list/get responses show instead of the value. A keyed hash, not a
plain one, so that a leaked database alone does not allow an offline dictionary attack on the keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

API_KEY_PREFIX = "nvapi-"
# NVCF's issuer id for keys of the cloud-functions service: the audience of a key's policies here
ISSUER_SERVICE_ID = "nvidia-cloud-functions-ncp-service-id-aketm"


def new_api_key() -> str:
    return API_KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_client_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def is_api_key(bearer: str) -> bool:
    return bearer.startswith(API_KEY_PREFIX)


def keyed_hash(secret_key: str, value: str) -> str:
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


def hashes_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def key_hint(api_key: str) -> str:
    return f"{API_KEY_PREFIX}**********{api_key[-3:]}"
