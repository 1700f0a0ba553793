"""What the invocation plane asks the control plane before it touches a request.

The gateway and the gRPC proxy hold an `AccessAuthority` (shared.contracts). In `fnplane up` it is the
control plane's own implementation, in process; a gateway on another host uses the HTTP form:

* `POST /v1/fnplane/access` with the caller's own `Authorization` header and an AccessRequest body
  -> AccessGrant, or the problem+json the control plane would give (401/403/404).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fnplane.shared.models.compute import WireModel
from fnplane.shared.revocations import Held


class AccessRequest(WireModel):
    # a scope the caller must hold, e.g. invoke_function or queue_details
    scope: str
    function_id: str | None = Field(None, alias="functionId")
    version_id: str | None = Field(None, alias="functionVersionId")


class VersionTarget(WireModel):
    version_id: str = Field(alias="functionVersionId")
    function_name: str = Field(alias="functionName")
    owner_nca_id: str = Field(alias="ownerNcaId")
    status: str  # FunctionStatus wire value: ACTIVE, DEPLOYING, DEGRADING, DEGRADED, ERROR, INACTIVE
    inference_url: str = Field(alias="inferenceUrl")
    function_type: str = Field(alias="functionType")
    # sum over the version's GPU specifications; the gateway sizes nothing from it, it is informative
    max_request_concurrency: int = Field(1, alias="maxRequestConcurrency")
    # the version's rateLimit object as stored (camelCase keys of nvcf-api.md 2.2), or None
    rate_limit: dict[str, Any] | None = Field(None, alias="rateLimit")


class AccessGrant(WireModel):
    """The caller, and (when a function was named) every version of it the caller may see.

    Versions are not filtered by status: the invocation plane applies NVCF's rules (invocable =
    ACTIVE or DEGRADING; only DEGRADED -> 400; none -> 404; queues list ACTIVE and DEPLOYING).
    Raises (as errors, not in the grant): 401 bad credential, 403 scope or API-key resource missing,
    404 function or version not visible to the caller's account.
    """

    nca_id: str = Field(alias="ncaId")
    subject: str
    scopes: list[str]
    # which credential this is, so a revocation (shared/revocations.py) finds its grants: the API
    # key's id, or the JWT's client id
    key_id: str | None = Field(None, alias="keyId")
    client_id: str | None = Field(None, alias="clientId")
    # when the credential expires (seconds since 1970): a cache keeps the grant no longer
    valid_until: float | None = Field(None, alias="validUntil")
    function_id: str | None = Field(None, alias="functionId")
    versions: list[VersionTarget] = Field(default_factory=list)
    # the named function is public (authorized party '*'): NVCF shows no queue of one (400)
    public: bool = False

    def held(self, function_id: str | None) -> Held:
        """The grant's credential (on that function), as a revocation matches it."""
        return Held(self.key_id, self.client_id, self.nca_id, function_id)
