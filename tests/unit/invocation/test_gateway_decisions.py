"""The gateway's decisions without NATS: poll parsing, routing, version choice, admission (access,
version, rate limit, wake), and the one mapping from an error to its answer."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fnplane.bus.buckets import Buckets
from fnplane.invocation import strict_json
from fnplane.invocation.access import CachedAccess, choose_version
from fnplane.invocation.bus import RequestBus
from fnplane.invocation.exec_envelope import exec_document
from fnplane.invocation.http import error_answer
from fnplane.invocation.rate_limit import RateLimiter
from fnplane.invocation.revocations import OpenInvocations
from fnplane.invocation.router import Route, Router
from fnplane.invocation.routing import direct_target, poll_seconds
from fnplane.invocation.service import InvocationService
from fnplane.invocation.settings import GatewaySettings
from fnplane.invocation.signing import UrlSigner
from fnplane.invocation.waker import Waker
from fnplane.shared import errors, revocations
from fnplane.shared.models.access import AccessGrant, VersionTarget

FID = "3f1c9a52-7d4e-4b8a-9c21-5e6f7a8b9c0d"
V1 = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
V2 = "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a"


def version(version_id: str, status: str, rate_limit: dict | None = None) -> VersionTarget:
    return VersionTarget(
        functionVersionId=version_id,
        functionName="fn",
        ownerNcaId="owner",
        status=status,
        inferenceUrl="/infer",
        functionType="DEFAULT",
        rateLimit=rate_limit,
    )


def grant(*versions: VersionTarget) -> AccessGrant:
    return AccessGrant(
        ncaId="owner", subject="alice", scopes=["invoke_function"], functionId=FID, versions=list(versions)
    )


# --- NVCF-POLL-SECONDS -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "sse_default", "expected"),
    [
        ({}, False, 60.0),
        ({"accept": "text/event-stream"}, True, 1200.0),
        ({"accept": "text/event-stream"}, False, 60.0),
        ({"nvcf-poll-seconds": "0"}, False, 1.0),
        ({"nvcf-poll-seconds": " 3600 "}, False, 3600.0),
        ({"nvcf-poll-seconds": "+07"}, False, 7.0),
        ({"nvcf-poll-seconds": ""}, False, 60.0),
    ],
)
def test_poll_seconds(headers, sse_default, expected):
    assert poll_seconds(headers, sse_default=sse_default) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [("3601", "<= 3600"), ("1.5", "integer"), ("soon", "integer"), ("-1", "integer"), ("1_0", "integer")],
)
def test_a_bad_poll_header_names_the_field_and_the_rule(raw, rule):
    with pytest.raises(errors.BadRequestError) as caught:
        poll_seconds({"nvcf-poll-seconds": raw}, sse_default=False)
    assert caught.value.field == "NVCF-POLL-SECONDS" and caught.value.rule == rule


# --- routing ---------------------------------------------------------------------------------------


def test_host_and_header_routing():
    assert direct_target({"host": f"{FID}.invocation.example.com"}) == (FID, None)
    assert direct_target({"host": f"{V1}.{FID.upper()}.INVOCATION.127.0.0.1:8080"}) == (FID, V1)
    assert direct_target({"function-id": FID.upper(), "host": "api.example.com"}) == (FID, None)
    assert direct_target({"host": "api.example.com"}) is None
    # the version header pins the version of the Host form too
    pinned = {"host": f"{FID}.invocation.example.com", "function-version-id": V1.upper()}
    assert direct_target(pinned) == (FID, V1)


async def _endpoint(*args: object) -> None:
    return None


def test_the_route_table_matches_literals_and_captures_ids_in_lower_case():
    status, pexec, versioned, position = _endpoint, _endpoint, _endpoint, _endpoint
    router = Router(
        [
            Route("GET", "pexec/status/{rid}", status),
            Route("POST", "pexec/functions/{fid}", pexec),
            Route("POST", "pexec/functions/{fid}/versions/{vid}", versioned),
            Route("GET", "queues/{rid}/position", position),
        ]
    )
    assert router.resolve("POST", f"/v2/nvcf/pexec/functions/{FID.upper()}/") == (pexec, [FID])
    assert router.resolve("POST", f"/v2/nvcf/pexec/functions/{FID}/versions/{V1}") == (versioned, [FID, V1])
    assert router.resolve("GET", f"/v2/nvcf/queues/{V2}/position") == (position, [V2])
    assert router.resolve("GET", f"/v2/nvcf/pexec/functions/{FID}") is None  # wrong method
    assert router.resolve("POST", f"/v3/nvcf/pexec/functions/{FID}") is None
    assert router.resolve("GET", "/v2/nvcf/pexec/status") is None
    # what a path takes, for the 405's Allow (none: an unknown path, 404)
    assert router.allowed(f"/v2/nvcf/pexec/functions/{FID}") == ["POST"]
    assert router.allowed(f"/v2/nvcf/pexec/status/{V1.upper()}") == ["GET", "HEAD"]
    # HEAD is its GET's (the body dropped by the caller)
    assert router.resolve("HEAD", f"/v2/nvcf/queues/{V2}/position") == (position, [V2])
    assert router.resolve("HEAD", f"/v2/nvcf/pexec/functions/{FID}") is None
    assert router.allowed("/v2/nvcf/pexec/nothing") == []
    assert router.allowed(f"/v3/nvcf/pexec/functions/{FID}") == []


# --- version choice --------------------------------------------------------------------------------


def test_version_choice_follows_nvcf():
    active, degrading = version(V1, "ACTIVE"), version(V2, "DEGRADING")
    chosen = {choose_version(grant(active, degrading), None).version_id for _ in range(200)}
    assert chosen == {V1, V2}  # uniformly among the invocable ones
    assert choose_version(grant(active, degrading), V2).version_id == V2
    with pytest.raises(errors.BadRequestError):
        choose_version(grant(version(V1, "DEGRADED")), None)  # only DEGRADED -> 400
    with pytest.raises(errors.NotFoundError):
        choose_version(grant(version(V1, "DEPLOYING")), None)  # none invocable -> 404
    with pytest.raises(errors.NotFoundError):
        choose_version(grant(active), V2)  # a version the caller cannot see


# --- admission -------------------------------------------------------------------------------------


class TableAuthority:
    """An AccessAuthority answering from a table (the seam's contract: shared/contracts.py)."""

    def __init__(self, grants: dict[str, AccessGrant]) -> None:
        self.grants = grants
        self.calls = 0

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        self.calls += 1
        if bearer not in self.grants:
            raise errors.UnauthorizedError("invalid bearer")
        return self.grants[bearer]

    def forget(self, event: object) -> None:
        pass


def service(authority: TableAuthority, limiter: RateLimiter | None = None) -> InvocationService:
    settings = GatewaySettings(auth_cache_ttl_s=60.0)
    bus = RequestBus("nats://127.0.0.1:1", settings)  # never started: admission needs no bus
    return InvocationService(
        settings,
        access=CachedAccess(authority, settings.auth_cache_ttl_s),
        rate_limiter=limiter or RateLimiter(),
        bus=bus,
        waker=Waker(settings, bus.has_workers),  # no control_url: never wakes
        stores=Buckets(None),  # type: ignore[arg-type]
        signer=UrlSigner(b"k" * 32),
        open_invocations=OpenInvocations(),
    )


async def test_admission_checks_access_then_version_then_rate_limit():
    now = [0.0]
    limited = version(V1, "ACTIVE", {"rateLimit": "2-M"})
    authority = TableAuthority({"good": grant(limited), "degraded": grant(version(V2, "DEGRADED"))})
    svc = service(authority, RateLimiter(clock=lambda: now[0]))
    with pytest.raises(errors.UnauthorizedError):
        await svc.admit("bad", FID, None)
    with pytest.raises(errors.BadRequestError):
        await svc.admit("degraded", FID, None)
    for _ in range(2):
        _, target = await svc.admit("good", FID, None)
        assert target.version_id == V1
    with pytest.raises(errors.TooManyRequestsError):
        await svc.admit("good", FID, None)
    now[0] += 61
    await svc.admit("good", FID, None)
    assert authority.calls == 3  # a grant is cached; a refusal is not (bad, degraded, good once)


async def test_a_cached_grant_that_refuses_the_call_is_asked_for_again():
    # the grant cached while the version was DEPLOYING must not refuse a call once the API says ACTIVE
    authority = TableAuthority({"good": grant(version(V1, "DEPLOYING"))})
    svc = service(authority)
    with pytest.raises(errors.NotFoundError):
        await svc.admit("good", FID, None)
    assert authority.calls == 1  # the refusal of a grant just fetched asks no second time
    authority.grants["good"] = grant(version(V1, "ACTIVE"))
    _, target = await svc.admit("good", FID, None)
    assert target.version_id == V1 and authority.calls == 2
    await svc.admit("good", FID, None)
    assert authority.calls == 2  # the renewed grant is cached again


# --- errors ----------------------------------------------------------------------------------------


def test_error_answers_are_problem_documents_with_their_headers():
    status, headers, body = error_answer(errors.UnauthorizedError("no"), "/v2/nvcf/pexec/functions/x")
    assert status == 401
    assert (b"www-authenticate", b"Bearer") in headers
    assert (b"content-type", b"application/problem+json") in headers
    assert json.loads(body)["instance"] == "/v2/nvcf/pexec/functions/x"

    status, headers, body = error_answer(
        errors.TooManyRequestsError("slow down", retry_after_s=3), "/p", invocation=True
    )
    assert status == 429
    assert (b"retry-after", b"3") in headers
    assert (b"nvcf-status", b"errored") in headers  # on invocation routes, as NVCF answers

    status, _, body = error_answer(
        errors.BadRequestError("bad", field="NVCF-POLL-SECONDS", rule="integer"), "/p"
    )
    doc = json.loads(body)
    assert status == 400 and doc["field"] == "NVCF-POLL-SECONDS" and doc["rule"] == "integer"


def test_the_exec_envelope_carries_the_workers_error_code():
    worker_failure = json.dumps({"status": 500, "errorCode": 911, "detail": "upload failed"}).encode()
    status, doc = exec_document("r", 500, [], worker_failure, None)
    assert status == 500 and doc["errorCode"] == 911 and doc["status"] == "errored"
    status, doc = exec_document("r", 404, [], b'{"error": "nope"}', None)
    assert doc["errorCode"] == 404  # the function's own error: its status
    status, doc = exec_document("r", 302, [], b"", "https://gw/result")
    assert status == 200 and doc["responseReference"] == "https://gw/result"


@pytest.mark.parametrize("body", [b"NaN", b"[1e400]", b'{"x": -Infinity}'])
def test_the_exec_envelope_stays_json_when_the_function_answers_nan(body):
    # was `"response": NaN` (json.loads reads it, json.dumps writes it back): no strict parser reads that
    status, doc = exec_document("r", 200, [], body, None)
    assert status == 200 and doc["response"] == body.decode()
    json.loads(json.dumps(doc), parse_constant=lambda name: pytest.fail(f"{name} in the envelope"))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"requestBody": NaN}', "requestBody"),
        (b'{"requestBody": {"scores": [1, 1e400]}}', "requestBody.scores.1"),
        (
            b'{"requestHeader": {"pollDurationSeconds": Infinity}, "requestBody": {}}',
            "requestHeader.pollDurationSeconds",
        ),
        (b"-Infinity", "body"),
    ],
)
def test_a_request_body_with_a_number_that_is_not_json_is_400_naming_it(raw, field):
    with pytest.raises(errors.BadRequestError) as refused:
        strict_json.loads_request(raw)
    assert refused.value.field == field
    assert strict_json.loads_request(b'{"requestBody": [1.5, 2]}') == {"requestBody": [1.5, 2]}


# --- the gateway's grant cache ---------------------------------------------------------------------


async def test_cached_grants_are_dropped_by_a_revocation_and_never_outlive_their_credential():
    lasting = grant(version(V1, "ACTIVE")).model_copy(update={"key_id": "k1"})
    expired = grant(version(V1, "ACTIVE")).model_copy(update={"key_id": "k2", "valid_until": time.time() - 1})
    authority = TableAuthority({"lasting": lasting, "expired": expired})
    access = CachedAccess(authority, 60.0)
    for _ in range(2):
        await access.grant("lasting", "invoke_function", FID)
    assert authority.calls == 1  # cached
    access.forget(revocations.revoked(key_ids=["k2"]))
    await access.grant("lasting", "invoke_function", FID)
    assert authority.calls == 1  # another key's revocation leaves it
    access.forget(revocations.revoked(key_ids=["k1"]))
    await access.grant("lasting", "invoke_function", FID)
    assert authority.calls == 2  # asked again
    access.forget(revocations.revoked(function_ids=[FID]))
    await access.grant("lasting", "invoke_function", FID)
    assert authority.calls == 3
    # a credential that expires before the TTL: never served from the cache past its expiry
    for _ in range(2):
        await access.grant("expired", "invoke_function", FID)
    assert authority.calls == 5


async def settle() -> None:
    """Let every task that is ready run until it waits (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


class GatedAuthority(TableAuthority):
    """A TableAuthority whose lookups wait until `gate` is set (a slow database)."""

    def __init__(self, grants: dict[str, AccessGrant]) -> None:
        super().__init__(grants)
        self.gate = asyncio.Event()

    async def grant(
        self, bearer: str, scope: str, function_id: str | None = None, version_id: str | None = None
    ) -> AccessGrant:
        self.calls += 1
        await self.gate.wait()
        if bearer not in self.grants:
            raise errors.UnauthorizedError("invalid bearer")
        return self.grants[bearer]


async def test_concurrent_requests_share_one_lookup_and_a_caller_going_away_cancels_none():
    authority = GatedAuthority({"good": grant(version(V1, "ACTIVE"))})
    access = CachedAccess(authority, 60.0)
    waiting = [asyncio.create_task(access.grant("good", "invoke_function", FID)) for _ in range(32)]
    refused = [asyncio.create_task(access.grant("bad", "invoke_function", FID)) for _ in range(3)]
    await settle()
    waiting[0].cancel()  # the client that started the lookup goes away
    authority.gate.set()
    grants = await asyncio.gather(*waiting[1:])
    assert {g.versions[0].version_id for g in grants} == {V1}
    assert authority.calls == 2  # one for "good", one for "bad"
    for task in refused:
        with pytest.raises(errors.UnauthorizedError):
            await task
    with pytest.raises(errors.UnauthorizedError):
        await access.grant("bad", "invoke_function", FID)
    assert authority.calls == 3  # a refusal is shared while in flight, never cached


async def test_a_grant_near_its_end_is_served_while_one_lookup_renews_it():
    authority = GatedAuthority({"good": grant(version(V1, "ACTIVE"))})
    authority.gate.set()
    access = CachedAccess(authority, 0.5)
    await access.grant("good", "invoke_function", FID)
    await asyncio.sleep(0.45)  # in the last fifth of its 0.5 s
    authority.gate.clear()  # the renewal hangs: callers must not wait for it
    for _ in range(10):
        await asyncio.wait_for(access.grant("good", "invoke_function", FID), 0.04)
    assert authority.calls == 2  # one renewal for all of them
    authority.gate.set()
    await asyncio.sleep(0.1)  # past the first grant's end: the renewed one serves
    await access.grant("good", "invoke_function", FID)
    assert authority.calls == 2


async def test_a_revocation_during_a_lookup_makes_later_requests_ask_again():
    lasting = grant(version(V1, "ACTIVE")).model_copy(update={"key_id": "k1"})
    authority = GatedAuthority({"lasting": lasting})
    access = CachedAccess(authority, 60.0)
    before = asyncio.create_task(access.grant("lasting", "invoke_function", FID))
    await settle()
    access.forget(revocations.revoked(key_ids=["k1"]))
    after = asyncio.create_task(access.grant("lasting", "invoke_function", FID))
    await settle()
    assert authority.calls == 2  # the request after the revocation did not join the earlier lookup
    authority.gate.set()
    await asyncio.gather(before, after)
    await access.grant("lasting", "invoke_function", FID)
    assert authority.calls == 2  # the later lookup's grant is cached, the earlier one's is not
