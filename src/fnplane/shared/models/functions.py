"""Function and version wire models (nvcf-api.md 1.1, 2.1-2.3, 2.6, 3.2).

Requests validate every rule of NVCF's `CreateFunctionRequest`; responses are `FunctionDto` with
null fields omitted (routes serialize with `exclude_none`).
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fnplane.shared.image_references import (
    MAX_REFERENCE_LENGTH,
    REFERENCE_RULE,
    REFERENCE_SCHEMA_PATTERN,
    image_reference_error,
)
from fnplane.shared.models.wire import ApiModel, Duration, Int32, Timestamp, dedupe, invalid, lenient

NAME_PATTERN = re.compile(r"^[a-z0-9A-Z][a-z0-9A-Z\-_]*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9\-_:=]+$")
SECRET_NAME_PATTERN = re.compile(r"^[a-z0-9A-Z][a-z0-9A-Z_.\-]*$")
RATE_LIMIT_PATTERN = re.compile(r"^(?!.*-([SMHD]).*-\1)[1-9]\d*-[SMHD](,\s*[1-9]\d*-[SMHD])*$")
TOKEN_RATE_LIMIT_PATTERN = re.compile(r"^(?!.*-([SMHDW]).*-\1)[1-9]\d*-[SMHDW](,\s*[1-9]\d*-[SMHDW])*$")
ROUTING_METHODS = (
    "power-of-two",
    "wait-and-widen",
    "round-robin",
    "random",
    "pulsar",
    "pulsar-wait-and-widen",
    "groq-multiregion",
    "pulsar-multiregion",
)
MAX_TAGS = 64
# the lengths the database's columns hold (control/db/tables.py: function_versions)
MAX_URI_LENGTH = 2048
MAX_SERVICE_NAME_LENGTH = 256
MAX_TAG_LENGTH = 128
MAX_SECRET_VALUE_LENGTH = 32768
MAX_PRIORITY = 4294967295

DEFAULT_HEALTH_URI = "/v2/health/ready"
DEFAULT_HEALTH_PORT = 8000
DEFAULT_HEALTH_TIMEOUT = "PT10S"
DEFAULT_HEALTH_STATUS = 200
GRPC_INFERENCE_URL = "/grpc"


class FunctionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DEPLOYING = "DEPLOYING"
    ERROR = "ERROR"
    INACTIVE = "INACTIVE"
    DELETED = "DELETED"
    DEGRADED = "DEGRADED"
    DEGRADING = "DEGRADING"


# NVCF's "busy" statuses: a deployment exists and may be updated.
BUSY_STATUSES = frozenset(
    {FunctionStatus.ACTIVE, FunctionStatus.DEPLOYING, FunctionStatus.DEGRADED, FunctionStatus.DEGRADING}
)


class HealthProtocol(StrEnum):
    HTTP = "HTTP"
    GRPC = "gRPC"


class ApiBodyFormat(StrEnum):
    PREDICT_V2 = "PREDICT_V2"
    CUSTOM = "CUSTOM"


class FunctionType(StrEnum):
    DEFAULT = "DEFAULT"
    STREAMING = "STREAMING"
    LLM = "LLM"


class Visibility(StrEnum):
    AUTHORIZED = "authorized"
    PRIVATE = "private"
    PUBLIC = "public"


class InstanceStatus(StrEnum):
    ACTIVE = "ACTIVE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    ERRORED = "ERRORED"
    PREEMPTED = "PREEMPTED"
    DELETED = "DELETED"
    TERMINATED = "TERMINATED"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise invalid("must not be blank")
    return value


# what a stored path may contain: it is appended to http://127.0.0.1:<port> by the worker
ABSOLUTE_PATH_RULE = (
    "must be an absolute path: start with a single '/', without scheme, authority, '@', '\\', "
    "whitespace or control characters"
)
_NOT_IN_PATH = re.compile(r"[\x00-\x20\x7f@\\]")
# the same rule as a JSON-schema pattern, for the OpenAPI document
ABSOLUTE_PATH_PATTERN = r"^/(?!/)[^\x00-\x20\x7f@\\]*$"


def is_absolute_path(value: str) -> bool:
    """`/...` and nothing that could make a URL's host or break its request line."""
    return value.startswith("/") and not value.startswith("//") and _NOT_IN_PATH.search(value) is None


def request_target(path: str) -> str:
    """`path` (with its query) as an origin-form request target the worker can send to its function:
    it starts with '/', so no stored or client value can name another host (defence in depth beside
    the validation), and whitespace, control and non-ASCII characters are percent-encoded."""
    target = path if path.startswith("/") else "/" + path
    if _UNSAFE_IN_TARGET.search(target) is None:
        return target
    return _UNSAFE_IN_TARGET.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode()), target)


_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")


def _absolute_path(value: str | None) -> str | None:
    if value is not None and not is_absolute_path(value):
        raise invalid(ABSOLUTE_PATH_RULE)
    return value


class HealthDto(ApiModel):
    protocol: Annotated[HealthProtocol, lenient(HealthProtocol)]
    uri: str
    port: Int32 = Field(gt=0, le=65535)
    timeout: Duration
    expected_status_code: Int32 = Field(ge=100, le=599)

    _uri = field_validator("uri")(_not_blank)


class HealthRequestDto(HealthDto):
    """`health` as a client sends it: its `uri` is a path the worker will call."""

    uri: str = Field(json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN})

    _uri_path = field_validator("uri")(_absolute_path)


class EnvironmentVariable(ApiModel):
    key: str = Field(min_length=1)
    value: str


class SecretDto(ApiModel):
    name: str = Field(min_length=1, max_length=48)
    value: str | dict[str, Any]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SECRET_NAME_PATTERN.match(value):
            raise invalid(f"must match {SECRET_NAME_PATTERN.pattern}")
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        text = value if isinstance(value, str) else json.dumps(value)
        if not 1 <= len(text.strip()) <= MAX_SECRET_VALUE_LENGTH:
            raise invalid(f"must be 1-{MAX_SECRET_VALUE_LENGTH} characters long")
        return value

    def as_text(self) -> str:
        return self.value if isinstance(self.value, str) else json.dumps(self.value)


def _unique_secret_names(value: list[SecretDto] | None) -> list[SecretDto] | None:
    names = [secret.name for secret in value or ()]
    if len(names) != len(set(names)):
        raise invalid("secret names must be unique")
    return value


class UpdateSecretsRequest(ApiModel):
    """Body of PUT /v2/nvcf/secrets/functions/{functionId}/versions/{versionId} (nvcf-api.md 1.7)."""

    secrets: list[SecretDto]

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[SecretDto]) -> list[SecretDto]:
        if not value:
            raise invalid("must not be empty")
        _unique_secret_names(value)
        return value


def _check_rate(value: str | None) -> str | None:
    if value is not None and not RATE_LIMIT_PATTERN.match(value):
        raise invalid(f"must match {RATE_LIMIT_PATTERN.pattern} (e.g. 100-S or 10-M,5-S)")
    return value


class RateLimitDto(ApiModel):
    rate_limit: str | None = None
    exempted_nca_ids: list[str] | None = Field(None, max_length=32)
    per_nca_id_rate: dict[str, str] | None = Field(None, max_length=32)
    per_user_rate: str | None = None
    sync_check: bool = False

    _rates = field_validator("rate_limit", "per_user_rate")(_check_rate)

    @field_validator("sync_check", mode="before")
    @classmethod
    def _null_sync_check(cls, value: Any) -> Any:
        return False if value is None else value  # null means unset: the default

    @field_validator("per_nca_id_rate")
    @classmethod
    def _per_nca(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for rate in (value or {}).values():
            _check_rate(rate)
        return value

    @model_validator(mode="after")
    def _rules(self) -> RateLimitDto:
        if not (self.rate_limit or self.per_nca_id_rate or self.per_user_rate):
            raise invalid("at least one of rateLimit, perNcaIdRate, perUserRate is required")
        if self.exempted_nca_ids and not self.rate_limit:
            raise invalid("exemptedNcaIds is only allowed with a global rateLimit", field="exemptedNcaIds")
        overlap = set(self.exempted_nca_ids or ()) & set(self.per_nca_id_rate or {})
        if overlap:
            raise invalid(
                f"perNcaIdRate keys must not also be exempted: {', '.join(sorted(overlap))}",
                field="perNcaIdRate",
            )
        return self


class LlmConfigDto(ApiModel):
    uris: list[str] | None = None
    routing_method: str | None = None
    token_rate_limit: str | None = None
    tokenizer: str | None = None

    @field_validator("routing_method")
    @classmethod
    def _routing(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalized = value.strip().lower().replace("_", "-")
        if normalized not in ROUTING_METHODS:
            raise invalid(f"must be one of {', '.join(ROUTING_METHODS)}")
        return normalized

    @field_validator("token_rate_limit")
    @classmethod
    def _token_rate(cls, value: str | None) -> str | None:
        if value is not None and not TOKEN_RATE_LIMIT_PATTERN.match(value):
            raise invalid(f"must match {TOKEN_RATE_LIMIT_PATTERN.pattern}")
        return value


class ModelDto(ApiModel):
    name: str = Field(min_length=1)
    version: str | None = None
    uri: str | None = None
    llm_config: LlmConfigDto | None = None


class ResourceDto(ApiModel):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    uri: str = Field(min_length=1)


class PriorityDto(ApiModel):
    default_priority: Int32 | None = Field(None, ge=0, le=MAX_PRIORITY)
    per_account_priority: dict[str, Annotated[Int32, Field(ge=0, le=MAX_PRIORITY)]] | None = Field(
        None, max_length=64
    )

    @model_validator(mode="after")
    def _default_needed(self) -> PriorityDto:
        if self.per_account_priority and self.default_priority is None:
            raise invalid(
                "defaultPriority is required when perAccountPriority is not empty", field="defaultPriority"
            )
        return self


class LlmInvocationConfigDto(ApiModel):
    priority: PriorityDto | None = None


class TelemetriesDto(ApiModel):
    logs_telemetry_id: uuid.UUID | None = None
    metrics_telemetry_id: uuid.UUID | None = None
    traces_telemetry_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one(self) -> TelemetriesDto:
        if not (self.logs_telemetry_id or self.metrics_telemetry_id or self.traces_telemetry_id):
            raise invalid(
                "at least one of logsTelemetryId, metricsTelemetryId, tracesTelemetryId is required"
            )
        return self


def _check_tags(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    tags = dedupe(value)
    if len(tags) > MAX_TAGS:
        raise invalid(f"at most {MAX_TAGS} tags are allowed")
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            raise invalid(f"each tag must be at most {MAX_TAG_LENGTH} characters")
        if not TAG_PATTERN.match(tag):
            raise invalid(r"each tag must match [a-zA-Z0-9\-_:=]+")
    return tags


class CreateFunctionRequest(ApiModel):
    # the patterns document what the validators below check (their 400s name the rule)
    name: str = Field(min_length=1, max_length=128, json_schema_extra={"pattern": NAME_PATTERN.pattern})
    inference_url: str = Field(
        max_length=MAX_URI_LENGTH, json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN}
    )
    inference_port: Int32 | None = Field(None, gt=0, le=65535)
    container_image: str | None = Field(
        None, max_length=MAX_REFERENCE_LENGTH, json_schema_extra={"pattern": REFERENCE_SCHEMA_PATTERN}
    )
    helm_chart: str | None = Field(None, max_length=MAX_URI_LENGTH)
    helm_chart_service_name: str | None = Field(None, max_length=MAX_SERVICE_NAME_LENGTH)
    container_args: str | None = None
    container_environment: list[EnvironmentVariable] | None = None
    health: HealthRequestDto | None = None
    health_uri: str | None = Field(None, json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN})
    models: list[ModelDto] | None = None
    resources: list[ResourceDto] | None = None
    api_body_format: Annotated[ApiBodyFormat, lenient(ApiBodyFormat)] = ApiBodyFormat.CUSTOM
    function_type: Annotated[FunctionType, lenient(FunctionType)] = FunctionType.DEFAULT
    tags: list[str] | None = None
    description: str | None = Field(None, max_length=256)
    secrets: list[SecretDto] | None = None
    rate_limit: RateLimitDto | None = None
    llm_invocation_config: LlmInvocationConfigDto | None = None
    telemetries: TelemetriesDto | None = None

    _inference_url = field_validator("inference_url")(_not_blank)
    _paths = field_validator("inference_url", "health_uri")(_absolute_path)
    _tags = field_validator("tags")(_check_tags)

    @field_validator("api_body_format", "function_type", mode="before")
    @classmethod
    def _null_is_the_default(cls, value: Any, info: ValidationInfo) -> Any:
        # null means unset (nvcf-api.md 0.2); NVCF maps a null functionType to DEFAULT and fails a
        # null apiBodyFormat with a 500
        if value is None:
            default = cls.model_fields[info.field_name or ""].default
            return default.value
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise invalid(f"must match {NAME_PATTERN.pattern}")
        return value

    @field_validator("container_image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        """A reference the agent can pull (fnplane.shared.image_references); blank is no image."""
        if value is None or not value.strip():
            return None
        reason = image_reference_error(value)
        if reason is not None:
            raise invalid(f"{REFERENCE_RULE}: {reason}")
        return value

    @field_validator("container_args")
    @classmethod
    def _command_line(cls, value: str | None) -> str | None:
        """Words as the agent splits them (shlex, as NVCA does): an unclosed quote or a trailing
        backslash would only fail every instance at its start (create-container-error)."""
        if value is not None:
            try:
                shlex.split(value)
            except ValueError as error:
                raise invalid(f"must split into words like a shell command line: {error}") from None
        return value

    _secrets = field_validator("secrets")(_unique_secret_names)

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[ModelDto] | None) -> list[ModelDto] | None:
        names = [model.name for model in value or ()]
        if len(names) != len(set(names)):
            raise invalid("model names must be unique")
        return value

    @model_validator(mode="after")
    def _rules(self) -> CreateFunctionRequest:
        if self.helm_chart and self.container_image:
            raise invalid("containerImage and helmChart are mutually exclusive", field="helmChart")
        if bool(self.helm_chart) != bool(self.helm_chart_service_name):
            raise invalid(
                "helmChart and helmChartServiceName must be given together",
                field="helmChartServiceName" if self.helm_chart else "helmChart",
            )
        if self.helm_chart and (self.container_args or self.container_environment):
            raise invalid(
                "a helmChart function must not set containerArgs or containerEnvironment",
                field="containerArgs" if self.container_args else "containerEnvironment",
            )
        if self.function_type == FunctionType.LLM:
            if not self.models:
                raise invalid("an LLM function requires models", field="models")
            for index, model in enumerate(self.models):
                if not (model.llm_config and model.llm_config.uris):
                    raise invalid(
                        f"model {model.name}: llmConfig.uris must not be empty for an LLM function",
                        field=f"models.{index}.llmConfig.uris",
                    )
        else:
            for index, model in enumerate(self.models or ()):
                if not (model.version and model.uri):
                    raise invalid(
                        f"model {model.name}: version and uri are required",
                        field=f"models.{index}.{'uri' if model.version else 'version'}",
                    )
        if self.llm_invocation_config and self.function_type != FunctionType.LLM:
            raise invalid(
                "llmInvocationConfig is only allowed for LLM functions", field="llmInvocationConfig"
            )
        return self

    def effective_health(self) -> HealthDto:
        """NVCF's defaults when `health` is omitted (nvcf-api.md 2.1)."""
        if self.health is not None:
            return self.health
        grpc = self.inference_url.strip() == GRPC_INFERENCE_URL
        return HealthDto(
            protocol=HealthProtocol.GRPC if grpc else HealthProtocol.HTTP,
            uri=self.health_uri or DEFAULT_HEALTH_URI,
            port=self.inference_port or DEFAULT_HEALTH_PORT,
            timeout=DEFAULT_HEALTH_TIMEOUT,
            expected_status_code=DEFAULT_HEALTH_STATUS,
        )


class ModelUpdateDto(ApiModel):
    model_name: str = Field(min_length=1)
    llm_config: LlmConfigDto | None = None

    _name = field_validator("model_name")(_not_blank)

    @model_validator(mode="after")
    def _something(self) -> ModelUpdateDto:
        config = self.llm_config
        if config is None or (config.token_rate_limit is None and config.routing_method is None):
            raise invalid(
                "each model update needs llmConfig.tokenRateLimit or llmConfig.routingMethod",
                field="llmConfig",
            )
        return self


class UpdateFunctionRequest(ApiModel):
    tags: list[str] | None = None
    rate_limit: RateLimitDto | None = None
    model_updates: list[ModelUpdateDto] | None = None
    llm_invocation_config: LlmInvocationConfigDto | None = None

    _tags = field_validator("tags")(_check_tags)

    @field_validator("model_updates")
    @classmethod
    def _unique(cls, value: list[ModelUpdateDto] | None) -> list[ModelUpdateDto] | None:
        names = [update.model_name for update in value or ()]
        if len(names) != len(set(names)):
            raise invalid("modelUpdates model names must be unique")
        return value

    def has_update(self) -> bool:
        return (
            self.tags is not None
            or self.rate_limit is not None
            or bool(self.model_updates)
            or self.llm_invocation_config is not None
        )


class InstanceDto(ApiModel):
    instance_id: str
    function_id: str
    function_version_id: str
    instance_type: str
    instance_status: InstanceStatus
    icms_request_id: str | None = None
    nca_id: str
    gpu: str
    backend: str | None = None
    location: str | None = None
    instance_created_at: Timestamp
    instance_updated_at: Timestamp


class FunctionDto(ApiModel):
    id: str
    nca_id: str
    version_id: str
    name: str
    status: FunctionStatus
    inference_url: str | None = None
    owned_by_different_account: bool | None = None
    inference_port: int | None = None
    container_args: str | None = None
    container_environment: list[EnvironmentVariable] | None = None
    models: list[ModelDto] | None = None
    container_image: str | None = None
    api_body_format: ApiBodyFormat
    helm_chart: str | None = None
    helm_chart_service_name: str | None = None
    health_uri: str | None = None
    created_at: Timestamp
    active_instances: list[InstanceDto] | None = None
    resources: list[ResourceDto] | None = None
    tags: list[str] | None = None
    description: str
    health: HealthDto | None = None
    function_type: FunctionType
    secrets: list[str] | None = None
    rate_limit: RateLimitDto | None = None
    llm_invocation_config: LlmInvocationConfigDto | None = None
    telemetries: TelemetriesDto | None = None


class FunctionResponse(ApiModel):
    function: FunctionDto


class FunctionListResponse(ApiModel):
    functions: list[FunctionDto]


class FunctionIdsResponse(ApiModel):
    function_ids: list[str]
