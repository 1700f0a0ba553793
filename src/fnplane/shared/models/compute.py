"""The contract between the control plane and the compute plane (agents).

Agents speak HTTP to the control plane (scope `cluster-management`):

* `PUT  /v1/fnplane/clusters/{clusterName}`            ClusterRegistration -> ClusterRecord
  (register or refresh the cluster's inventory; repeated every few seconds, it is also the heartbeat)
* `GET  /v1/fnplane/clusters/{clusterName}/instances`  -> InstanceAssignments
  (level-triggered: every instance placed on the cluster that is not yet terminated; the agent starts
  those with desired=true that it does not run and stops those with desired=false)
* `POST /v1/fnplane/instances/{instanceId}/reports`    InstanceReport -> 204
  (state changes; the control plane recomputes the function status within a second)
* `POST /v1/fnplane/clusters/{clusterName}/metrics`   WorkerMetrics -> 204 (autoscaler input)

The control plane publishes an empty message on `subjects.cluster_changed(clusterName)` whenever the
assignments of a cluster change, so agents react at once; they also poll as a fallback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class InstanceState(StrEnum):
    """Lifecycle of one instance as the agent reports it."""

    REQUESTED = "requested"  # placed by the control plane, not yet picked up by an agent
    STARTING = "starting"  # process started, health not yet passing
    RUNNING = "running"  # healthy, serving
    FAILED = "failed"  # gave up: restart loop, startup timeout, or could not start
    TERMINATED = "terminated"  # stopped on purpose (undeploy, scale down)


class InstanceTypeInventory(WireModel):
    name: str
    description: str = ""
    default: bool = False
    gpu_count: int = Field(1, alias="gpuCount", ge=1)


class GpuInventory(WireModel):
    gpu: str
    capacity: int = Field(ge=0)
    instance_types: list[InstanceTypeInventory] = Field(alias="instanceTypes")


class ClusterRegistration(WireModel):
    agent_id: str = Field(alias="agentId")
    # at most what the clusters table holds
    group: str = Field(max_length=128)
    region: str = Field("local", max_length=64)
    inventory: list[GpuInventory]


class ClusterRecord(WireModel):
    cluster_id: str = Field(alias="clusterId")
    name: str
    group: str
    region: str
    inventory: list[GpuInventory]


class HealthCheck(WireModel):
    protocol: str  # "HTTP" or "gRPC"
    uri: str
    port: int
    timeout_s: float = Field(alias="timeoutSeconds")
    expected_status_code: int = Field(alias="expectedStatusCode")


class RegistryAuth(WireModel):
    """The account's login for the registry of an instance's image (Docker's `X-Registry-Auth`)."""

    username: str
    password: str
    server_address: str = Field(alias="serveraddress")


class InstanceAssignment(WireModel):
    instance_id: str = Field(alias="instanceId")
    function_id: str = Field(alias="functionId")
    version_id: str = Field(alias="functionVersionId")
    function_name: str = Field(alias="functionName")
    nca_id: str = Field(alias="ncaId")
    desired: bool
    state: InstanceState
    gpu: str
    instance_type: str = Field(alias="instanceType")
    backend: str
    region: str
    container_image: str | None = Field(None, alias="containerImage")
    container_args: str | None = Field(None, alias="containerArgs")
    # key -> value; secrets of the version are merged in here as environment variables
    container_environment: dict[str, str] = Field(default_factory=dict, alias="containerEnvironment")
    # the version's secrets again, name -> value (an object where the secret is one): the function's
    # /var/secrets/secrets.json, as NVCF mounts it (reference/containers.md 1.3)
    secrets: dict[str, Any] = Field(default_factory=dict)
    inference_url: str = Field(alias="inferenceUrl")
    inference_port: int | None = Field(None, alias="inferencePort")
    health: HealthCheck
    max_request_concurrency: int = Field(alias="maxRequestConcurrency")
    # the instance's own NATS credentials (.creds text, its version's subjects only), minted by the
    # control plane; the agent writes it to a 0600 file for the worker, never into any environment
    nats_credentials: str | None = Field(None, alias="natsCredentials")
    # the account's registry credential for `container_image`'s registry host, opened for this
    # assignment only (the container backend sends it with the pull; never logged or stored)
    registry_auth: RegistryAuth | None = Field(None, alias="registryAuth")


class InstanceAssignments(WireModel):
    instances: list[InstanceAssignment]


class InstanceReport(WireModel):
    state: InstanceState
    cause: str | None = None
    # last 1 KiB of the process's stderr when it failed
    error_log: str | None = Field(None, alias="errorLog")
    restarts: int | None = None
    # what a starting instance is doing before it can serve, in one line (the container backend's
    # "pulling image X: 2 of 5 layers, ..."); the deployment's healthInfo shows it while it lasts
    detail: str | None = None


class VersionLoad(WireModel):
    """What the workers of one version on one cluster saw over the last metrics interval."""

    version_id: str = Field(alias="functionVersionId")
    instances: int
    busy_fraction: float = Field(alias="busyFraction", ge=0.0)  # busy slot-seconds / total slot-seconds
    invoked: bool  # at least one request in the interval


class WorkerMetrics(WireModel):
    interval_s: float = Field(alias="intervalSeconds")
    versions: list[VersionLoad]
