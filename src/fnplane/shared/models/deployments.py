"""Deployment, GPU-specification, sharing and cluster-group wire models.

nvcf-api.md 1.2, 1.3, 1.11, 2.4-2.6.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fnplane.shared.models.functions import FunctionStatus
from fnplane.shared.models.wire import (
    ApiModel,
    Duration,
    Int32,
    Timestamp,
    dedupe,
    duration_seconds,
    invalid,
    lenient,
)

MAX_REQUEST_CONCURRENCY = 16384
# NVCF sets no bound; each spec is rows and reconcile work, and 1 MiB of body held ~11,000 of them
MAX_GPU_SPECIFICATIONS = 64
MIN_MAX_RULE = "Invalid request: 'minInstances' must be lesser than or equal to 'maxInstances'"


class AutoscalingPolicy(StrEnum):
    CUSTOM_CONFIGURATION = "CUSTOM_CONFIGURATION"
    PLATFORM_CONFIGURATION = "PLATFORM_CONFIGURATION"


class HelmValidationPolicyName(StrEnum):
    DEFAULT = "Default"
    UNRESTRICTED = "Unrestricted"


class StickinessDto(ApiModel):
    size: Duration
    threshold: Duration

    @model_validator(mode="after")
    def _bounds(self) -> StickinessDto:
        if duration_seconds(self.size) > 3600:
            raise invalid("stickiness.size must be at most PT1H", field="size")
        if duration_seconds(self.threshold) >= duration_seconds(self.size):
            raise invalid("stickiness.threshold must be shorter than stickiness.size", field="threshold")
        return self


class ScalingDetailsDto(ApiModel):
    metric: str | None = None
    factor: float = Field(gt=0)
    threshold: Int32 = Field(ge=0)
    stickiness: StickinessDto | None = None


class AutoscalingConfigurationDto(ApiModel):
    scale_up_details: ScalingDetailsDto | None = None
    scale_down_details: ScalingDetailsDto | None = None

    @model_validator(mode="after")
    def _factors(self) -> AutoscalingConfigurationDto:
        if self.scale_up_details and self.scale_up_details.factor <= 1.0:
            raise invalid("scaleUpDetails.factor must be greater than 1.0", field="scaleUpDetails.factor")
        if self.scale_down_details and self.scale_down_details.factor >= 1.0:
            raise invalid("scaleDownDetails.factor must be less than 1.0", field="scaleDownDetails.factor")
        return self


class KubernetesTypeDto(ApiModel):
    group: str
    version: str
    kind: str


class HelmValidationPolicyDto(ApiModel):
    name: Annotated[HelmValidationPolicyName, lenient(HelmValidationPolicyName)]
    extra_kubernetes_types: list[KubernetesTypeDto] | None = Field(None, min_length=1)


def _not_blank_strings(value: list[str] | None) -> list[str] | None:
    return None if value is None else dedupe([v for v in value if v and v.strip()])


class GpuSpecificationRequest(ApiModel):
    """One entry of `deploymentSpecifications` on create (GpuSpecificationDto as input)."""

    gpu: str = Field(min_length=1)
    instance_type: str
    backend: str | None = None
    min_instances: Int32 = Field(ge=0)
    max_instances: Int32 = Field(ge=1)
    max_request_concurrency: Int32 = Field(1, ge=1, le=MAX_REQUEST_CONCURRENCY)
    availability_zones: list[str] | None = None
    clusters: list[str] | None = None
    regions: list[str] | None = None
    attributes: list[str] | None = None
    configuration: dict[str, Any] | None = None
    preferred_order: Int32 = Field(1, ge=1, le=99)
    autoscaling_configuration: AutoscalingConfigurationDto | None = None
    helm_validation_policy: HelmValidationPolicyDto | None = None

    _lists = field_validator("availability_zones", "clusters", "regions", "attributes")(_not_blank_strings)

    @field_validator("max_request_concurrency", "preferred_order", mode="before")
    @classmethod
    def _null_is_the_default(cls, value: Any, info: ValidationInfo) -> Any:
        # null means unset (nvcf-api.md 0.2): NVCF reads a null maxRequestConcurrency as 1
        return cls.model_fields[info.field_name or ""].default if value is None else value

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str) -> str:
        if not value.strip():
            raise invalid("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _rules(self) -> GpuSpecificationRequest:
        if self.min_instances > self.max_instances:
            raise invalid(MIN_MAX_RULE, field="minInstances")
        if self.backend and self.clusters:
            raise invalid("backend and clusters are mutually exclusive", field="clusters")
        return self


class CreateDeploymentRequest(ApiModel):
    deployment_specifications: list[GpuSpecificationRequest] = Field(
        min_length=1, max_length=MAX_GPU_SPECIFICATIONS
    )


class UpdateGpuSpecificationRequest(ApiModel):
    """PATCH body (nvcf-api.md 2.5)."""

    min_instances: Int32 | None = Field(None, ge=0)
    max_instances: Int32 | None = Field(None, ge=1)
    autoscaling_configuration: AutoscalingConfigurationDto | None = None
    autoscaling_configuration_policy: Annotated[AutoscalingPolicy, lenient(AutoscalingPolicy)] | None = None

    def has_update(self) -> bool:
        return any(
            v is not None
            for v in (
                self.min_instances,
                self.max_instances,
                self.autoscaling_configuration,
                self.autoscaling_configuration_policy,
            )
        )


class LegacyGpuSpecificationUpdate(ApiModel):
    """An entry of the deprecated PUT body: only min/max/maxRequestConcurrency may change."""

    gpu_specification_id: str | None = None
    gpu: str | None = None
    instance_type: str | None = None
    backend: str | None = None
    clusters: list[str] | None = None
    min_instances: Int32 = Field(ge=0)
    max_instances: Int32 = Field(ge=1)
    max_request_concurrency: Int32 | None = Field(None, ge=1, le=MAX_REQUEST_CONCURRENCY)

    @model_validator(mode="after")
    def _rules(self) -> LegacyGpuSpecificationUpdate:
        if self.min_instances > self.max_instances:
            raise invalid(MIN_MAX_RULE, field="minInstances")
        return self


class LegacyUpdateDeploymentRequest(ApiModel):
    deployment_specifications: list[LegacyGpuSpecificationUpdate] = Field(min_length=1)


class GpuSpecificationDto(ApiModel):
    gpu_specification_id: str
    gpu: str
    instance_type: str
    backend: str | None = None
    min_instances: int
    max_instances: int
    max_request_concurrency: int
    availability_zones: list[str] | None = None
    clusters: list[str] | None = None
    regions: list[str] | None = None
    attributes: list[str] | None = None
    configuration: dict[str, Any] | None = None
    autoscaling_configuration: AutoscalingConfigurationDto | None = None


class DeploymentHealthDto(ApiModel):
    icms_request_id: str
    gpu: str
    backend: str | None = None
    instance_type: str | None = None
    error: str


class FunctionDeploymentDto(ApiModel):
    function_id: str
    function_version_id: str
    deployment_id: str
    function_name: str
    nca_id: str
    function_status: FunctionStatus
    health_info: list[DeploymentHealthDto] | None = None
    deployment_specifications: list[GpuSpecificationDto]
    created_at: Timestamp
    last_updated_at: Timestamp


class DeploymentResponse(ApiModel):
    deployment: FunctionDeploymentDto


class GpuSpecificationResponse(ApiModel):
    gpu_specification: GpuSpecificationDto


# --- sharing (nvcf-api.md 1.3) ---


class AuthorizedPartyDto(ApiModel):
    # not blank (checked below); at most what the database's columns hold (authorized_parties)
    nca_id: str = Field(max_length=64, json_schema_extra={"pattern": r"\S"})
    client_id: str | None = Field(None, max_length=128)

    @field_validator("nca_id")
    @classmethod
    def _nca(cls, value: str) -> str:
        if not value.strip():
            raise invalid("ncaId must not be blank")
        return value.strip()

    @field_validator("client_id")
    @classmethod
    def _client(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise invalid("clientId must not be whitespace only")
        return value


class AuthorizedPartiesRequest(ApiModel):
    authorized_parties: list[AuthorizedPartyDto] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> AuthorizedPartiesRequest:
        seen: set[str] = set()
        for index, party in enumerate(self.authorized_parties):
            if party.nca_id in seen:
                raise invalid(
                    "authorizedParties ncaId values must be unique", field=f"authorizedParties.{index}.ncaId"
                )
            seen.add(party.nca_id)
        owner_of_client: dict[str, str] = {}
        for index, party in enumerate(self.authorized_parties):
            if party.client_id is not None:
                if owner_of_client.setdefault(party.client_id, party.nca_id) != party.nca_id:
                    raise invalid(
                        "each clientId must map to exactly one ncaId",
                        field=f"authorizedParties.{index}.clientId",
                    )
        return self


class AuthorizedPartyRequest(ApiModel):
    authorized_party: AuthorizedPartyDto


class AuthorizedPartiesDto(ApiModel):
    id: str
    nca_id: str
    version_id: str | None = None
    authorized_parties: list[AuthorizedPartyDto]


class AuthorizedPartiesResponse(ApiModel):
    function: AuthorizedPartiesDto


class AuthorizedPartiesListResponse(ApiModel):
    functions: list[AuthorizedPartiesDto]


# --- cluster inventory (nvcf-api.md 1.11) ---


class InstanceTypeDto(ApiModel):
    name: str
    description: str
    default: bool


class ClusterGroupGpuDto(ApiModel):
    name: str
    instance_types: list[InstanceTypeDto]


class ClusterDto(ApiModel):
    k8s_version: str | None = None
    id: str
    name: str


class ClusterGroupDto(ApiModel):
    id: str
    name: str
    nca_id: str
    authorized_nca_ids: list[str]
    gpus: list[ClusterGroupGpuDto]
    clusters: list[ClusterDto]


class ClusterGroupsResponse(ApiModel):
    cluster_groups: list[ClusterGroupDto]


class SupportedGpuDto(ApiModel):
    gpu: str
    backend: str
