"""Telemetries (nvcf-api.md 1.10): an account's endpoints for the logs, metrics and traces of its
functions. A function version names them in its `telemetries` object (nvcf-api.md 2.1). The secret (a
token or a JSON object of credentials) is write-only: answers never carry it, the control plane stores
it sealed.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from fnplane.shared.models.functions import SecretDto
from fnplane.shared.models.wire import ApiModel, Timestamp, dedupe, invalid, lenient

MAX_ENDPOINT_LENGTH = 2048
ENDPOINT_RULE = (
    "must be an absolute URL with a scheme and a host, such as https://otlp.example.com:4318/v1/logs, "
    f"at most {MAX_ENDPOINT_LENGTH} characters, without whitespace"
)
# RFC 3986 3.1: a scheme is a letter, then letters, digits, '+', '-', '.'
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


UNICODE_RULE = "must be Unicode text (a JSON \\u escape of a lone surrogate is not)"


def _is_unicode_text(value: str) -> bool:
    """Whether `value` can be stored and sealed (UTF-8): a JSON string may hold a lone surrogate."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class TelemetryProtocol(StrEnum):
    HTTP = "HTTP"
    GRPC = "GRPC"


class TelemetryProvider(StrEnum):
    PROMETHEUS = "PROMETHEUS"
    GRAFANA_CLOUD = "GRAFANA_CLOUD"
    SPLUNK = "SPLUNK"
    DATADOG = "DATADOG"
    SERVICENOW = "SERVICENOW"
    KRATOS = "KRATOS"
    KRATOS_THANOS = "KRATOS_THANOS"
    TIMESTREAM = "TIMESTREAM"
    VICTORIAMETRICS = "VICTORIAMETRICS"
    AZURE_MONITOR = "AZURE_MONITOR"
    OTEL_COLLECTOR = "OTEL_COLLECTOR"


class TelemetryType(StrEnum):
    LOGS = "LOGS"
    METRICS = "METRICS"
    TRACES = "TRACES"


Type = Annotated[TelemetryType, lenient(TelemetryType)]


def _check_endpoint(value: str) -> str:
    value = value.strip()
    if (
        not value
        or len(value) > MAX_ENDPOINT_LENGTH
        or _WHITESPACE_OR_CONTROL.search(value)
        or not _is_unicode_text(value)
    ):
        raise invalid(ENDPOINT_RULE)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise invalid(ENDPOINT_RULE) from None
    if not _SCHEME.match(parts.scheme) or not parts.hostname:
        raise invalid(ENDPOINT_RULE)
    return value


def _check_types(value: list[TelemetryType]) -> list[TelemetryType]:
    if not value:
        raise invalid("must name at least one of LOGS, METRICS, TRACES")
    return [TelemetryType(v) for v in dedupe([str(v) for v in value])]


class TelemetrySecret(SecretDto):
    """NVCF's SecretDto, its value sealed as UTF-8 (so it must be Unicode text)."""

    @field_validator("value")
    @classmethod
    def _sealable(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        # an object's text is ASCII (json.dumps escapes), a string's is what the client sent
        if isinstance(value, str) and not _is_unicode_text(value):
            raise invalid(UNICODE_RULE)
        return value


class CreateTelemetryRequest(ApiModel):
    """Body of `POST /v2/nvcf/telemetries`; the telemetry's name is the secret's."""

    endpoint: str = Field(json_schema_extra={"format": "uri", "maxLength": MAX_ENDPOINT_LENGTH})
    protocol: Annotated[TelemetryProtocol, lenient(TelemetryProtocol)]
    provider: Annotated[TelemetryProvider, lenient(TelemetryProvider)]
    types: list[Type]
    secret: TelemetrySecret

    _endpoint = field_validator("endpoint")(_check_endpoint)
    _types = field_validator("types")(_check_types)


class UpdateTelemetrySecretRequest(ApiModel):
    """Body of `PUT /v2/nvcf/secrets/telemetries/{telemetryId}` (nvcf-api.md 1.7)."""

    secret: TelemetrySecret


class TelemetryDto(ApiModel):
    telemetry_id: uuid.UUID
    name: str
    endpoint: str
    protocol: TelemetryProtocol
    provider: TelemetryProvider
    types: list[TelemetryType]
    created_at: Timestamp


class TelemetryResponse(ApiModel):
    telemetry: TelemetryDto


class TelemetriesResponse(ApiModel):
    telemetries: list[TelemetryDto]
