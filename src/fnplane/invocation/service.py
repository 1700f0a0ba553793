"""The invocation service: every decision an invocation takes before and around the request bus, with
its collaborators handed in (access cache, rate limiter, request bus, waker, buckets, URL signer).

    admit()        access (scope `invoke_function`, visibility), version choice, rate limit, wake
    invocation()   one request through the bus (invoke.py), ready to `begin()`
    wake()         a request (or gRPC session) still not taken: maybe no instance runs
    result_location()  the signed Location of a large result
"""

from __future__ import annotations

from fnplane.bus.buckets import Buckets
from fnplane.invocation import observe
from fnplane.invocation.access import CachedAccess, choose_version
from fnplane.invocation.assets import asset_record, content_path
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.http import Request
from fnplane.invocation.invoke import Call, Invocation
from fnplane.invocation.rate_limit import RateLimiter
from fnplane.invocation.revocations import OpenInvocations
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.invocation.waker import Waker
from fnplane.shared import errors, scopes, subjects, wire
from fnplane.shared.models.access import AccessGrant, VersionTarget
from fnplane.telemetry import tracing


class InvocationService:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        access: CachedAccess,
        rate_limiter: RateLimiter,
        bus: RequestBus,
        waker: Waker,
        stores: Buckets,
        signer: UrlSigner,
        open_invocations: OpenInvocations,
    ) -> None:
        self.settings = settings
        self._access = access
        self._rate_limiter = rate_limiter
        self._bus = bus
        self._waker = waker
        self._stores = stores
        self._signer = signer
        self._open = open_invocations

    async def admit(
        self, bearer: str, function_id: str, version_id: str | None
    ) -> tuple[AccessGrant, VersionTarget]:
        """Every invocation's gate: access, version choice, rate limits, and a wake for an idle version."""
        with tracing.span("admission"):
            grant, target = await self._access.grant_for(
                bearer,
                scopes.INVOKE_FUNCTION,
                function_id,
                version_id,
                lambda g: choose_version(g, version_id),
            )
            observe.chosen(target.version_id, grant.nca_id)
            self._rate_limiter.check(grant, target)
            self._waker.wake_if_idle(target.version_id, bearer)
            observe.admitted(function_id, target.version_id, grant.nca_id)
        return grant, target

    async def asset_references(
        self, request: Request, nca_id: str, ids: list[str]
    ) -> list[wire.AssetReference]:
        """The input assets a request names (NVCF-INPUT-ASSET-REFERENCES), uploaded by its account,
        each with a signed download URL that lives as long as the request may (the worker's only way
        to an asset: its bus credential reads no object store but its own version's results)."""
        s = self.settings
        base = request.base_url(s.asset_base_url or s.public_url)
        refs = []
        for asset_id in ids:
            record = await asset_record(self._stores, nca_id, asset_id)
            if record is None or not record.uploaded:
                raise errors.NotFoundError(f"asset {asset_id} not found")
            url = self._signer.sign(base, "GET", content_path(asset_id), s.request_ttl_s)
            refs.append(
                wire.AssetReference(
                    asset_id, subjects.asset_object(nca_id, asset_id), record.content_type, url=url
                )
            )
        return refs

    def wake(self, version_id: str, bearer: str) -> None:
        self._waker.wake(version_id, bearer)

    @property
    def open_invocations(self) -> OpenInvocations:
        """What a revocation re-checks (gRPC sessions join them)."""
        return self._open

    def invocation(self, request: Request, call: Call) -> Invocation:
        return Invocation(self._bus, self.settings, self._waker, self._open, request, call)

    def result_location(self, request: Request, request_id: str) -> str:
        s = self.settings
        return self._signer.result_url(request.base_url(s.public_url), request_id, s.result_url_ttl_s)
