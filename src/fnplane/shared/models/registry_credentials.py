"""Registry credentials (nvcf-api.md 1.9): the account's logins to container (and other artifact)
registries, used when an agent pulls a function's image. The secret is write-only: answers never
carry it, the control plane stores it sealed and opens it only into an instance's assignment.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from fnplane.shared.models.wire import ApiModel, Timestamp, dedupe, invalid, lenient

# nvcf-api.md 1.9: a DNS name of 4-253 characters with at least one dot
HOSTNAME_PATTERN = re.compile(r"(?=^.{4,253}$)(^((?!-)[a-zA-Z0-9-]{1,63}(?<!-)\.)+[a-zA-Z0-9]{2,63}$)")
MAX_HOSTNAME_LENGTH = 255


class ArtifactType(StrEnum):
    CONTAINER = "CONTAINER"
    HELM = "HELM"
    MODEL = "MODEL"
    RESOURCE = "RESOURCE"


class ProvisionedBy(StrEnum):
    SYSTEM = "SYSTEM"
    USER = "USER"


Artifact = Annotated[ArtifactType, lenient(ArtifactType)]


class RegistrySecret(ApiModel):
    """`value` is base64 of `username:password` (NGC: username `$oauthtoken`)."""

    name: str = Field(min_length=1, max_length=128)
    value: str = Field(min_length=1, max_length=16 * 1024)

    @field_validator("value")
    @classmethod
    def _login(cls, value: str) -> str:
        login_of(value)
        return value


def login_of(value: str) -> tuple[str, str]:
    """(username, password) of a secret value; the validation error says what is expected."""
    try:
        text = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise invalid("must be base64 of username:password") from None
    username, colon, password = text.partition(":")
    if not colon or not username:
        raise invalid("must be base64 of username:password") from None
    return username, password


def _hostname(value: str) -> str:
    """A registry host as image references name it: NVCF's DNS name, or (for a self-hosted registry)
    an IPv4 address or `localhost`; either with a `:port`, as the image's first component has it."""
    value = value.strip().lower()
    host, colon, port = value.rpartition(":") if ":" in value else (value, "", "")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        raise invalid("the port after ':' must be a number from 1 to 65535")
    if len(value) > MAX_HOSTNAME_LENGTH or not (HOSTNAME_PATTERN.match(host) or _ip_or_localhost(host)):
        raise invalid(
            "must be a registry host such as nvcr.io (a DNS name of 4-253 characters with a dot, an "
            "IPv4 address or localhost), optionally with :port"
        )
    return value


def _ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _artifact_types(value: list[ArtifactType]) -> list[ArtifactType]:
    if not value:
        raise invalid("must name at least one of CONTAINER, HELM, MODEL, RESOURCE")
    return [ArtifactType(v) for v in dedupe([str(v) for v in value])]


class CreateRegistryCredentialRequest(ApiModel):
    registry_hostname: str
    secret: RegistrySecret
    artifact_types: list[Artifact]
    tags: list[str] | None = None
    description: str | None = Field(None, max_length=512)

    _host = field_validator("registry_hostname")(_hostname)
    _types = field_validator("artifact_types")(_artifact_types)


class UpdateRegistryCredentialRequest(ApiModel):
    """PATCH: a new secret, and artifact types that are added (NVCF's field name)."""

    secret: RegistrySecret | None = None
    artifact_type_enums: list[Artifact] | None = None


class RegistryCredentialDetails(ApiModel):
    registry_credential_id: str
    nca_id: str
    registry_credential_name: str
    registry_name: str
    registry_hostname: str
    artifact_types: list[ArtifactType]
    tags: list[str] | None = None
    description: str | None = None
    provisioned_by: ProvisionedBy
    key_type: str | None = None
    last_updated_at: Timestamp
    created_at: Timestamp


class RegistryCredentialResponse(ApiModel):
    registry_credential: RegistryCredentialDetails


class RegistryCredentialsResponse(ApiModel):
    registry_credentials: list[RegistryCredentialDetails]


def image_registry(image: str) -> str:
    """The registry host of an image reference, as Docker reads it (`docker.io` when none is named)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return "docker.io"


def recognized(hostname: str, patterns: list[str]) -> bool:
    """Whether a host matches one of the recognized registries (an exact name, or a suffix such as
    `dkr.ecr.amazonaws.com` of `123.dkr.ecr.us-east-1.amazonaws.com`); a pattern without a port matches
    its host on any port (`127.0.0.1` recognizes `127.0.0.1:5000`), one with a port only that port."""
    host = hostname.lower()
    bare = host.rpartition(":")[0] if ":" in host else host
    return any(
        host == p or (":" not in p and (bare == p or bare.endswith("." + p) or _ecr_like(bare, p)))
        for p in patterns
    )


def _ecr_like(host: str, pattern: str) -> bool:
    # ECR hosts put the region between the two halves: <acct>.dkr.ecr.<region>.amazonaws.com
    head, _, tail = pattern.partition(".amazonaws.com")
    return bool(tail == "" and head and f".{head}." in f".{host}" and host.endswith(".amazonaws.com"))


def registry_name(hostname: str) -> str:
    known: dict[str, str] = {
        "docker.io": "Docker Hub",
        "nvcr.io": "NGC",
        "public.ecr.aws": "ECR Public",
        "cr.volces.com": "Volcano Engine",
    }
    if hostname in known:
        return known[hostname]
    if hostname.endswith(".amazonaws.com"):
        return "ECR"
    if hostname.endswith("azurecr.io"):
        return "ACR"
    return hostname
