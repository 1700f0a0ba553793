"""Telemetries (nvcf-api.md 1.10): CRUD with `manage_telemetries`, the secret sealed at rest, never
answered and replaced by `PUT /v2/nvcf/secrets/telemetries/{id}` (1.7, `update_secrets`); the
references of a function version's `telemetries` (2.1) checked at registration and holding the
telemetry until the version is gone; the account's `telemetries[]` (1.12). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from functions_helpers import function_body

from fnplane.control.db import tables
from fnplane.control.services.telemetries import SEALED_AS
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE
from fnplane.shared.scopes import LIST_FUNCTIONS, MANAGE_TELEMETRIES, REGISTER_FUNCTION, UPDATE_SECRETS

JSON = {"content-type": "application/json"}
TOKEN = "dd-api-key-that-must-never-be-stored-or-shown"


def body(name: str = "datadog", **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": "https://http-intake.logs.datadoghq.com",
        "protocol": "HTTP",
        "provider": "DATADOG",
        "types": ["LOGS"],
        "secret": {"name": name, "value": TOKEN},
        **extra,
    }


async def _create(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    response = await client.post("/v2/nvcf/telemetries", json=body(**kw))
    assert response.status_code == 200, response.text
    telemetry: dict[str, Any] = response.json()["telemetry"]
    return telemetry


async def _rows(engine: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(tables.telemetries.select())).all())


async def test_create_list_get_delete_and_the_secret_never_comes_back(
    admin_client: httpx.AsyncClient, control_engine: Any
) -> None:
    r = await admin_client.post(
        "/v2/nvcf/telemetries",
        json=body(
            "otel.collector",
            endpoint="https://otel.example.com:4317",
            protocol="grpc",
            provider="otel_collector",
            types=["traces", "LOGS", "Traces"],
        ),
    )
    assert r.status_code == 200, r.text
    telemetry = r.json()["telemetry"]
    assert set(telemetry) == {"telemetryId", "name", "endpoint", "protocol", "provider", "types", "createdAt"}
    assert telemetry["name"] == "otel.collector"  # the secret's name
    assert telemetry["endpoint"] == "https://otel.example.com:4317"
    assert (telemetry["protocol"], telemetry["provider"]) == ("GRPC", "OTEL_COLLECTOR")
    assert telemetry["types"] == ["TRACES", "LOGS"]
    assert str(uuid.UUID(telemetry["telemetryId"])) == telemetry["telemetryId"]
    assert telemetry["createdAt"].endswith("Z")
    tid = telemetry["telemetryId"]

    listed = await admin_client.get("/v2/nvcf/telemetries")
    assert listed.status_code == 200 and listed.json() == {"telemetries": [telemetry]}
    one = await admin_client.get(f"/v2/nvcf/telemetries/{tid}")
    assert one.status_code == 200 and one.json() == {"telemetry": telemetry}
    # the path's UUID in capitals names the same telemetry, as NVCF's UUID path variables do
    assert (await admin_client.get(f"/v2/nvcf/telemetries/{tid.upper()}")).status_code == 200

    for answer in (r, listed, one):
        assert TOKEN not in answer.text
    rows = await _rows(control_engine)
    assert rows and all(TOKEN not in str(row) for row in rows)

    assert (await admin_client.delete(f"/v2/nvcf/telemetries/{tid}")).status_code == 204
    gone = await admin_client.get(f"/v2/nvcf/telemetries/{tid}")
    assert gone.status_code == 404 and gone.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    assert (await admin_client.delete(f"/v2/nvcf/telemetries/{tid}")).status_code == 404
    assert (await admin_client.get("/v2/nvcf/telemetries")).json() == {"telemetries": []}
    # an id that is no UUID names nothing (and a NUL never reaches PostgreSQL, which refuses it)
    for bad in ("not-a-uuid", "%00"):
        assert (await admin_client.get(f"/v2/nvcf/telemetries/{bad}")).status_code == 404
        assert (await admin_client.delete(f"/v2/nvcf/telemetries/{bad}")).status_code == 404
        put = await admin_client.put(
            f"/v2/nvcf/secrets/telemetries/{bad}", json={"secret": {"name": "x", "value": "y"}}
        )
        assert put.status_code == 404, put.text


async def test_bad_input_is_a_400_naming_the_field_and_the_rule(admin_client: httpx.AsyncClient) -> None:
    without_secret = body()
    del without_secret["secret"]
    for bad, field in (
        (body(endpoint="not a url"), "endpoint"),
        (body(endpoint="otel-collector:4317"), "endpoint"),  # no authority: not a URL
        (body(endpoint="localhost"), "endpoint"),
        (body(endpoint="https://"), "endpoint"),
        (body(endpoint="https://otel.example.com:99999"), "endpoint"),
        (body(endpoint="https://otel.example.com/a b"), "endpoint"),
        (body(endpoint="https://" + "a" * 2050 + ".com"), "endpoint"),
        (body(endpoint=""), "endpoint"),
        (body(endpoint=None), "endpoint"),
        (body(protocol="UDP"), "protocol"),
        (body(protocol=None), "protocol"),
        (body(provider="NEWRELIC"), "provider"),
        (body(types=[]), "types"),
        (body(types=["EVENTS"]), "types"),
        (body(types="LOGS"), "types"),
        (without_secret, "secret"),
        (body(secret={"name": "-starts-with-a-dash", "value": "x"}), "secret.name"),
        (body(secret={"name": "x" * 49, "value": "x"}), "secret.name"),
        (body(secret={"name": "ok", "value": "  "}), "secret.value"),
    ):
        r = await admin_client.post("/v2/nvcf/telemetries", json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
        problem = r.json()
        assert problem["field"].startswith(field) and problem["rule"], (bad, problem)
    # JSON may escape a lone surrogate, which no database or seal can take
    for bad, field in (
        (body(endpoint="https://otel.example.com/\ud800"), "endpoint"),
        (body(secret={"name": "ok", "value": "\ud800"}), "secret.value"),
    ):
        raw = json.dumps(bad)  # ASCII: the surrogate as its escape
        r = await admin_client.post("/v2/nvcf/telemetries", content=raw, headers=JSON)
        assert r.status_code == 400 and r.json()["field"] == field, (raw, r.text)
    assert (await admin_client.get("/v2/nvcf/telemetries")).json() == {"telemetries": []}
    # a JSON object is a secret value too (NVCF's SecretDto)
    as_object = await _create(admin_client, secret={"name": "json", "value": {"apiKey": TOKEN}})
    assert as_object["name"] == "json"


async def test_a_duplicate_name_and_the_account_cap_are_400(admin_client: httpx.AsyncClient) -> None:
    await _create(admin_client, name="first")
    again = await admin_client.post("/v2/nvcf/telemetries", json=body("first", provider="SPLUNK"))
    assert again.status_code == 400, again.text
    assert again.json()["field"] == "secret.name" and "unique" in again.json()["rule"]

    capped = await admin_client.patch("/v2/nvcf/accounts/nvcf-default", json={"maxTelemetriesAllowed": 2})
    assert capped.status_code == 200, capped.text
    await _create(admin_client, name="second")
    third = await admin_client.post("/v2/nvcf/telemetries", json=body("third"))
    assert third.status_code == 400, third.text
    assert "maxTelemetriesAllowed" in third.json()["rule"] and "(2)" in third.json()["detail"]
    names = [t["name"] for t in (await admin_client.get("/v2/nvcf/telemetries")).json()["telemetries"]]
    assert names == ["first", "second"]


async def test_the_scopes_are_required_and_accounts_see_only_their_own(make_client: Any) -> None:
    owner = await make_client([MANAGE_TELEMETRIES])
    other = await make_client([MANAGE_TELEMETRIES, UPDATE_SECRETS], nca_id="other-account")
    lister = await make_client([LIST_FUNCTIONS])
    assert (await lister.get("/v2/nvcf/telemetries")).status_code == 403
    assert (await lister.post("/v2/nvcf/telemetries", json=body())).status_code == 403
    tid = (await _create(owner))["telemetryId"]
    assert (await lister.get(f"/v2/nvcf/telemetries/{tid}")).status_code == 403
    # the secret's update needs update_secrets, which manage_telemetries alone is not
    secret = {"secret": {"name": "datadog", "value": "v2"}}
    assert (await owner.put(f"/v2/nvcf/secrets/telemetries/{tid}", json=secret)).status_code == 403

    assert (await other.get(f"/v2/nvcf/telemetries/{tid}")).status_code == 404
    assert (await other.delete(f"/v2/nvcf/telemetries/{tid}")).status_code == 404
    assert (await other.put(f"/v2/nvcf/secrets/telemetries/{tid}", json=secret)).status_code == 404
    assert (await other.get("/v2/nvcf/telemetries")).json() == {"telemetries": []}
    # the same name in another account is another telemetry
    assert (await _create(other))["telemetryId"] != tid
    assert (await owner.get(f"/v2/nvcf/telemetries/{tid}")).status_code == 200


async def test_the_secret_update_replaces_the_sealed_value_and_keeps_the_name(
    admin_client: httpx.AsyncClient, control_app: Any, control_engine: Any
) -> None:
    telemetry = await _create(admin_client)
    tid = telemetry["telemetryId"]
    box = control_app.components.secret_box
    (before,) = await _rows(control_engine)
    assert box.open(tid, before.secret) == TOKEN and before.secret["name"] == SEALED_AS

    rotated = "rotated-token-also-never-shown"
    r = await admin_client.put(
        f"/v2/nvcf/secrets/telemetries/{tid}", json={"secret": {"name": "renamed", "value": rotated}}
    )
    assert r.status_code == 204 and r.content == b"", r.text
    (after,) = await _rows(control_engine)
    assert box.open(tid, after.secret) == rotated
    assert rotated not in str(after) and TOKEN not in str(after)
    # sealed for this telemetry only: another telemetry's id does not open it
    assert box.open(str(uuid.uuid4()), after.secret) is None
    assert (await admin_client.get(f"/v2/nvcf/telemetries/{tid}")).json() == {"telemetry": telemetry}

    for bad, field in (
        ({}, "secret"),
        ({"secret": {"name": "ok"}}, "secret.value"),
        ({"secret": {"name": "bad name", "value": "x"}}, "secret.name"),
    ):
        r = await admin_client.put(f"/v2/nvcf/secrets/telemetries/{tid}", json=bad)
        assert r.status_code == 400 and r.json()["field"].startswith(field), r.text
    unknown = await admin_client.put(
        f"/v2/nvcf/secrets/telemetries/{uuid.uuid4()}", json={"secret": {"name": "x", "value": "y"}}
    )
    assert unknown.status_code == 404, unknown.text


async def test_a_function_names_only_telemetries_of_its_account_with_the_matching_type(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    logs = (await _create(admin_client, name="logs", types=["LOGS"]))["telemetryId"]
    metrics_traces = (await _create(admin_client, name="mt", types=["METRICS", "TRACES"]))["telemetryId"]
    foreign_client = await make_client([MANAGE_TELEMETRIES, REGISTER_FUNCTION], nca_id="other-account")
    foreign = (await _create(foreign_client, name="theirs", types=["LOGS"]))["telemetryId"]

    ok = await admin_client.post(
        "/v2/nvcf/functions",
        json=function_body(
            "observed",
            telemetries={
                "logsTelemetryId": logs.upper(),  # a UUID in any case
                "metricsTelemetryId": metrics_traces,
                "tracesTelemetryId": metrics_traces,
            },
        ),
    )
    assert ok.status_code == 200, ok.text
    fn = ok.json()["function"]
    assert fn["telemetries"] == {
        "logsTelemetryId": logs,
        "metricsTelemetryId": metrics_traces,
        "tracesTelemetryId": metrics_traces,
    }

    for telemetries, field, rule in (
        ({"metricsTelemetryId": logs}, "telemetries.metricsTelemetryId", "METRICS"),
        ({"logsTelemetryId": metrics_traces}, "telemetries.logsTelemetryId", "LOGS"),
        ({"tracesTelemetryId": str(uuid.uuid4())}, "telemetries.tracesTelemetryId", "caller's account"),
        ({"logsTelemetryId": foreign}, "telemetries.logsTelemetryId", "caller's account"),
        ({"logsTelemetryId": "not-a-uuid"}, "telemetries.logsTelemetryId", "UUID"),
        ({}, "telemetries", "at least one"),
    ):
        for path in ("/v2/nvcf/functions", f"/v2/nvcf/functions/{fn['id']}/versions"):
            r = await admin_client.post(path, json=function_body("observed", telemetries=telemetries))
            assert r.status_code == 400, (path, telemetries, r.text)
            problem = r.json()
            assert problem["field"] == field and rule in problem["rule"], (path, telemetries, problem)
    versions = await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions")
    assert len(versions.json()["functions"]) == 1  # nothing was stored by the refused requests

    # the other account's own function may name its own telemetry
    theirs = await foreign_client.post(
        "/v2/nvcf/functions", json=function_body("theirs", telemetries={"logsTelemetryId": foreign})
    )
    assert theirs.status_code == 200, theirs.text


async def test_a_telemetry_a_version_names_cannot_be_deleted_until_the_version_is_gone(
    admin_client: httpx.AsyncClient,
) -> None:
    tid = (await _create(admin_client, types=["LOGS", "METRICS"]))["telemetryId"]
    first = await admin_client.post(
        "/v2/nvcf/functions", json=function_body("uses-it", telemetries={"metricsTelemetryId": tid})
    )
    assert first.status_code == 200, first.text
    fn = first.json()["function"]
    second = await admin_client.post(
        f"/v2/nvcf/functions/{fn['id']}/versions",
        json=function_body("uses-it", telemetries={"logsTelemetryId": tid}),
    )
    assert second.status_code == 200, second.text
    version_ids = [fn["versionId"], second.json()["function"]["versionId"]]

    for remaining in version_ids:
        refused = await admin_client.delete(f"/v2/nvcf/telemetries/{tid}")
        assert refused.status_code == 400, refused.text
        problem = refused.json()
        assert problem["field"] == "telemetryId" and remaining in problem["detail"], problem
        assert (await admin_client.get(f"/v2/nvcf/telemetries/{tid}")).status_code == 200
        deleted = await admin_client.delete(f"/v2/nvcf/functions/{fn['id']}/versions/{remaining}")
        assert deleted.status_code == 204, deleted.text
    assert (await admin_client.delete(f"/v2/nvcf/telemetries/{tid}")).status_code == 204


async def test_the_account_lists_its_telemetries(admin_client: httpx.AsyncClient) -> None:
    empty = await admin_client.get("/v2/nvcf/accounts/nvcf-default")
    assert empty.status_code == 200 and empty.json()["account"]["telemetries"] == []
    telemetry = await _create(admin_client)
    account = (await admin_client.get("/v2/nvcf/accounts/nvcf-default")).json()["account"]
    assert account["telemetries"] == [telemetry]
    assert account["maxTelemetriesAllowed"] == 25
    assert TOKEN not in str(account)
