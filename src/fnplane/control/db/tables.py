"""Every table of the control plane (SQLAlchemy Core metadata, one schema for SQLite and PostgreSQL).

Changing a table means changing the initial migration too (nothing has shipped yet):
run `make migration` after editing this file.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


accounts = Table(
    "accounts",
    metadata,
    Column("nca_id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("max_functions_allowed", Integer, nullable=False),
    # NVCF account limits that fnplane records and reports (tasks, telemetries, registry credentials)
    Column("max_tasks_allowed", Integer, nullable=False, server_default="50"),
    Column("max_telemetries_allowed", Integer, nullable=False, server_default="25"),
    Column("max_registry_credentials_allowed", Integer, nullable=False, server_default="25"),
    _ts("created_at"),
    _ts("updated_at"),
)

# A client is a JWT subject; its account is the tenant of every token it holds.
# Service accounts are clients with a secret and a set of allowed scopes.
clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("nca_id", String(64), ForeignKey("accounts.nca_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(128), nullable=True),
    Column("allowed_scopes", JSON, nullable=False),
    _ts("created_at"),
    _ts("rotated_at", nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("hint", String(64), nullable=False),
    Column("nca_id", String(64), ForeignKey("accounts.nca_id", ondelete="CASCADE"), nullable=False),
    Column("owner_id", String(128), nullable=False),
    Column("description", String(128), nullable=False),
    # NVCF's `authorizations` object: {"policies": [{"scopes": [...], "resources": [{"type", "id"}]}]}
    Column("authorizations", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
)

# An account's logins to artifact registries (nvcf-api.md 1.9); the secret is sealed (SecretBox).
registry_credentials = Table(
    "registry_credentials",
    metadata,
    Column("registry_credential_id", String(36), primary_key=True),
    Column(
        "nca_id", String(64), ForeignKey("accounts.nca_id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("name", String(128), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("artifact_types", JSON, nullable=False),
    Column("tags", JSON, nullable=True),
    Column("description", String(512), nullable=True),
    Column("provisioned_by", String(16), nullable=False),
    # {"name": "registry-credential", "sealed": "aesgcm1:..."}: base64 of username:password, sealed
    Column("secret", JSON, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("nca_id", "name", "hostname", name="uq_registry_credentials_name_host"),
)

# An account's telemetry endpoints (nvcf-api.md 1.10); the secret is sealed (SecretBox). Names are unique
# in an account; function versions refer to rows by id (function_versions.telemetries).
telemetries = Table(
    "telemetries",
    metadata,
    Column("telemetry_id", String(36), primary_key=True),
    Column(
        "nca_id", String(64), ForeignKey("accounts.nca_id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("name", String(48), nullable=False),
    Column("endpoint", String(2048), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("types", JSON, nullable=False),
    # {"name": "telemetry", "sealed": "aesgcm1:..."}
    Column("secret", JSON, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("nca_id", "name", name="uq_telemetries_name"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_key_pem", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    _ts("created_at"),
)

functions = Table(
    "functions",
    metadata,
    Column("function_id", String(36), primary_key=True),
    Column("nca_id", String(64), ForeignKey("accounts.nca_id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    _ts("created_at"),
)

function_versions = Table(
    "function_versions",
    metadata,
    Column("version_id", String(36), primary_key=True),
    Column("function_id", String(36), ForeignKey("functions.function_id"), nullable=False, index=True),
    Column("nca_id", String(64), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("description", String(256), nullable=False),
    Column("inference_url", String(2048), nullable=False),
    Column("inference_port", Integer, nullable=True),
    Column("container_image", String(2048), nullable=True),
    Column("container_args", Text, nullable=True),
    Column("container_environment", JSON, nullable=True),
    Column("health", JSON, nullable=False),
    Column("models", JSON, nullable=True),
    Column("resources", JSON, nullable=True),
    Column("helm_chart", String(2048), nullable=True),
    Column("helm_chart_service_name", String(256), nullable=True),
    Column("api_body_format", String(16), nullable=False),
    Column("function_type", String(16), nullable=False),
    Column("tags", JSON, nullable=True),
    Column("rate_limit", JSON, nullable=True),
    Column("secrets", JSON, nullable=True),
    Column("llm_invocation_config", JSON, nullable=True),
    Column("telemetries", JSON, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
)

# Sharing: version_id NULL means the function-level list (all versions).
authorized_parties = Table(
    "authorized_parties",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("function_id", String(36), ForeignKey("functions.function_id"), nullable=False, index=True),
    Column("version_id", String(36), nullable=True),
    Column("nca_id", String(64), nullable=False),
    Column("client_id", String(128), nullable=True),
    UniqueConstraint("function_id", "version_id", "nca_id", name="uq_authorized_parties_party"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("deployment_id", String(36), primary_key=True),
    Column("function_id", String(36), nullable=False, index=True),
    Column("version_id", String(36), ForeignKey("function_versions.version_id"), nullable=False, unique=True),
    Column("nca_id", String(64), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

gpu_specifications = Table(
    "gpu_specifications",
    metadata,
    Column("gpu_specification_id", String(36), primary_key=True),
    Column(
        "deployment_id",
        String(36),
        ForeignKey("deployments.deployment_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("gpu", String(64), nullable=False),
    Column("instance_type", String(128), nullable=False),
    Column("backend", String(128), nullable=True),
    Column("min_instances", Integer, nullable=False),
    Column("max_instances", Integer, nullable=False),
    Column("max_request_concurrency", Integer, nullable=False),
    # what the autoscaler currently wants, clamped to [min, max]
    Column("target_instances", Integer, nullable=False),
    Column("clusters", JSON, nullable=True),
    Column("regions", JSON, nullable=True),
    Column("attributes", JSON, nullable=True),
    Column("availability_zones", JSON, nullable=True),
    Column("configuration", JSON, nullable=True),
    Column("autoscaling_configuration", JSON, nullable=True),
    Column("preferred_order", Integer, nullable=False),
)

# One row per cluster an agent registered; `inventory` is the GPU pools it offers:
# [{"name": "L40S", "capacity": 8, "instanceTypes": [{"name", "description", "default", "gpuCount"}]}]
clusters = Table(
    "clusters",
    metadata,
    Column("cluster_id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("group_name", String(128), nullable=False),
    Column("nca_id", String(64), nullable=False),
    Column("region", String(64), nullable=False),
    Column("inventory", JSON, nullable=False),
    _ts("last_heartbeat_at", nullable=True),
    _ts("created_at"),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(36), primary_key=True),
    Column("function_id", String(36), nullable=False),
    Column("version_id", String(36), nullable=False),
    Column("deployment_id", String(36), nullable=False),
    Column("gpu_specification_id", String(36), nullable=False),
    Column("nca_id", String(64), nullable=False),
    Column("cluster_id", String(36), ForeignKey("clusters.cluster_id"), nullable=False),
    Column("gpu", String(64), nullable=False),
    Column("instance_type", String(128), nullable=False),
    Column("gpu_count", Integer, nullable=False),
    # requested -> starting -> running -> failed | terminated (see shared.models.instances)
    Column("state", String(16), nullable=False),
    # False once the control plane wants it gone; the agent stops it and reports `terminated`
    Column("desired", Boolean, nullable=False),
    Column("cause", Text, nullable=True),
    Column("error_log", Text, nullable=True),
    Column("restarts", Integer, nullable=False, default=0),
    # what a starting instance is doing, as its agent says (an image pull's progress); None otherwise
    Column("detail", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("started_at", nullable=True),
    _ts("terminated_at", nullable=True),
    Index("ix_instances_version_state", "version_id", "state"),
    Index("ix_instances_cluster_desired", "cluster_id", "desired"),
)
