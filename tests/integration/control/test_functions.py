"""Functions and versions through the HTTP API (nvcf-api.md 1.1, 2.1-2.3), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from functions_helpers import create_function, function_body

from fnplane.shared.scopes import LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS, REGISTER_FUNCTION


def _has_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or _has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


async def test_create_function_returns_200_with_defaults(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post("/v2/nvcf/functions", json=function_body("echo-fn"))
    assert response.status_code == 200
    fn = response.json()["function"]
    assert fn["name"] == "echo-fn"
    assert fn["status"] == "INACTIVE"
    assert fn["ncaId"] == "nvcf-default"
    assert fn["description"] == "echo-fn"  # defaults to the name
    assert fn["apiBodyFormat"] == "CUSTOM"
    assert fn["functionType"] == "DEFAULT"
    assert fn["health"] == {
        "protocol": "HTTP",
        "uri": "/v2/health/ready",
        "port": 8000,
        "timeout": "PT10S",
        "expectedStatusCode": 200,
    }
    assert fn["healthUri"] == "/v2/health/ready"
    assert fn["createdAt"].endswith("Z")
    assert fn["id"] and fn["versionId"] and fn["id"] != fn["versionId"]
    # nulls are omitted, not sent as null
    assert not _has_null(response.json())
    for absent in ("rateLimit", "tags", "secrets", "activeInstances", "models", "ownedByDifferentAccount"):
        assert absent not in fn


async def test_optional_fields_sent_as_null_take_their_defaults(admin_client: httpx.AsyncClient) -> None:
    optional = ("inferencePort", "health", "tags", "secrets", "models", "resources", "description")
    nulls = {field: None for field in (*optional, "apiBodyFormat", "functionType", "containerEnvironment")}
    rate_limit = {"rateLimit": "10-S", "syncCheck": None, "perUserRate": None}
    body = {**function_body("nulls"), **nulls, "rateLimit": rate_limit}
    response = await admin_client.post("/v2/nvcf/functions", json=body)
    assert response.status_code == 200, response.text  # apiBodyFormat/functionType/syncCheck null: 400s
    fn = response.json()["function"]
    assert (fn["apiBodyFormat"], fn["functionType"], fn["description"]) == ("CUSTOM", "DEFAULT", "nulls")
    assert fn["rateLimit"] == {"rateLimit": "10-S", "syncCheck": False}
    assert not _has_null(response.json())


async def test_health_defaults_follow_grpc_and_inference_port(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client, name="grpc-fn", inferenceUrl="/grpc", inferencePort=50051)
    assert fn["health"]["protocol"] == "gRPC"
    assert fn["health"]["port"] == 50051
    no_port = function_body("no-port")
    del no_port["inferencePort"]
    response = await admin_client.post("/v2/nvcf/functions", json=no_port)
    assert response.json()["function"]["health"]["port"] == 8000
    assert "inferencePort" not in response.json()["function"]
    legacy = await create_function(admin_client, name="legacy-health", healthUri="/healthz")
    assert legacy["health"]["uri"] == "/healthz"


async def test_enum_inputs_are_case_insensitive_and_output_canonical(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(
        admin_client,
        name="enums",
        apiBodyFormat="predict_v2",
        functionType="streaming",
        health={"protocol": "GRPC", "uri": "/h", "port": 9000, "timeout": "pt5s", "expectedStatusCode": 204},
    )
    assert fn["apiBodyFormat"] == "PREDICT_V2"
    assert fn["functionType"] == "STREAMING"
    assert fn["health"] == {
        "protocol": "gRPC",
        "uri": "/h",
        "port": 9000,
        "timeout": "PT5S",
        "expectedStatusCode": 204,
    }


async def test_unknown_fields_are_ignored(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client, name="extra", somethingNew={"a": 1}, utilsContainerImage="GO")
    assert "somethingNew" not in fn


async def test_all_fields_round_trip(admin_client: httpx.AsyncClient) -> None:
    logs = await admin_client.post(
        "/v2/nvcf/telemetries",
        json={
            "endpoint": "https://logs.example.com",
            "protocol": "HTTP",
            "provider": "SPLUNK",
            "types": ["LOGS"],
            "secret": {"name": "splunk", "value": "token"},
        },
    )
    assert logs.status_code == 200, logs.text
    logs_id = logs.json()["telemetry"]["telemetryId"]
    fn = await create_function(
        admin_client,
        name="full",
        description="a full function",
        tags=["team:ml", "tier=1", "tier=1"],
        containerEnvironment=[{"key": "MODE", "value": "fast"}],
        secrets=[{"name": "API_TOKEN", "value": "s3cr3t"}, {"name": "cfg.json", "value": {"k": "v"}}],
        rateLimit={"rateLimit": "10-M,5-S", "exemptedNcaIds": ["other"], "syncCheck": True},
        models=[{"name": "m", "version": "1", "uri": "ngc://m"}],
        resources=[{"name": "r", "version": "1", "uri": "ngc://r"}],
        telemetries={"logsTelemetryId": logs_id},
    )
    assert fn["description"] == "a full function"
    assert fn["telemetries"] == {"logsTelemetryId": logs_id}
    assert fn["tags"] == ["team:ml", "tier=1"]  # a set on the wire
    assert fn["containerEnvironment"] == [{"key": "MODE", "value": "fast"}]
    assert fn["rateLimit"]["rateLimit"] == "10-M,5-S"
    assert "secrets" not in fn  # names only, and only on the detailed single-version GET
    detail = await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")
    assert sorted(detail.json()["function"]["secrets"]) == ["API_TOKEN", "cfg.json"]
    no_secrets = await admin_client.get(
        f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}", params={"includeSecrets": "false"}
    )
    assert "secrets" not in no_secrets.json()["function"]
    assert "s3cr3t" not in detail.text


# each would reach the URL the worker calls: another host, a metadata service, a relative path
PATHS_THAT_ARE_NOT_ABSOLUTE = (
    "@evil.example:9/x",
    "http://169.254.169.254/latest",
    "echo",
    "//evil.example/x",
    "/a b",
    "/x\r\nHost: evil",
    "/\\evil.example",
)
HEALTH = {"protocol": "HTTP", "uri": "/", "port": 8000, "timeout": "PT1S", "expectedStatusCode": 200}

INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("name regex", {"name": "-bad"}, "name"),
    ("name with space", {"name": "bad name"}, "name"),
    ("name too long", {"name": "a" * 129}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("name missing", {"name": None}, "name"),
    ("inferenceUrl missing", {"inferenceUrl": None}, "inferenceUrl"),
    ("inferenceUrl blank", {"inferenceUrl": " "}, "inferenceUrl"),
    ("too many tags", {"tags": [f"t{i}" for i in range(65)]}, "tags"),
    ("tag too long", {"tags": ["a" * 129]}, "tags"),
    ("tag regex", {"tags": ["no spaces"]}, "tags"),
    ("description too long", {"description": "d" * 257}, "description"),
    ("image and chart", {"helmChart": "oci://c", "helmChartServiceName": "svc"}, "helmChart"),
    (
        "chart without service",
        {"containerImage": None, "containerArgs": None, "helmChart": "oci://c"},
        "helmChartServiceName",
    ),
    ("duplicate secrets", {"secrets": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "secrets"),
    ("secret name regex", {"secrets": [{"name": "-x", "value": "1"}]}, "secrets.0.name"),
    ("secret name too long", {"secrets": [{"name": "a" * 49, "value": "1"}]}, "secrets.0.name"),
    ("secret without value", {"secrets": [{"name": "A"}]}, "secrets.0.value"),
    ("secret empty value", {"secrets": [{"name": "A", "value": "  "}]}, "secrets.0.value"),
    ("rate limit regex", {"rateLimit": {"rateLimit": "10-X"}}, "rateLimit.rateLimit"),
    ("rate limit repeated unit", {"rateLimit": {"rateLimit": "10-S,5-S"}}, "rateLimit.rateLimit"),
    ("rate limit empty", {"rateLimit": {"syncCheck": True}}, "rateLimit"),
    ("bad enum", {"functionType": "BATCH"}, "functionType"),
    (
        "bad health protocol",
        {"health": {"protocol": "tcp", "uri": "/", "port": 1, "timeout": "PT1S", "expectedStatusCode": 200}},
        "health.protocol",
    ),
    (
        "bad health timeout",
        {"health": {"protocol": "HTTP", "uri": "/", "port": 1, "timeout": "10s", "expectedStatusCode": 200}},
        "health.timeout",
    ),
    (
        "health port missing",
        {"health": {"protocol": "HTTP", "uri": "/", "timeout": "PT1S", "expectedStatusCode": 200}},
        "health.port",
    ),
    ("health port zero", {"health": {**HEALTH, "port": 0}}, "health.port"),
    ("health port above 65535", {"health": {**HEALTH, "port": 65536}}, "health.port"),
    ("health port not a number", {"health": {**HEALTH, "port": "http"}}, "health.port"),
    ("LLM without models", {"functionType": "LLM"}, "models"),
    ("model without version", {"models": [{"name": "m", "uri": "u"}]}, "models.0.version"),
    ("model without uri", {"models": [{"name": "m", "version": "1"}]}, "models.0.uri"),
    (
        "LLM model without uris",
        {"functionType": "LLM", "models": [{"name": "m", "llmConfig": {"uris": []}}]},
        "models.0.llmConfig.uris",
    ),
    (
        "exempted without global",
        {"rateLimit": {"perUserRate": "1-S", "exemptedNcaIds": ["a"]}},
        "rateLimit.exemptedNcaIds",
    ),
    ("secret value neither string nor object", {"secrets": [{"name": "A", "value": 5}]}, "secrets.0.value"),
    (
        "second secret's name",
        {"secrets": [{"name": "A", "value": "1"}, {"name": "-x", "value": "1"}]},
        "secrets.1.name",
    ),
    ("telemetries empty", {"telemetries": {}}, "telemetries"),
    ("inferencePort zero", {"inferencePort": 0}, "inferencePort"),
    # the agent splits containerArgs like a shell: these would only fail every instance at its start
    ("containerArgs unclosed quote", {"containerArgs": "python3 -c 'print(1)"}, "containerArgs"),
    ("containerArgs trailing backslash", {"containerArgs": "python3 x.py \\"}, "containerArgs"),
    ("inferencePort a boolean", {"inferencePort": True}, "inferencePort"),
    *(
        (f"{field} {value!r}", override, field)
        for value in PATHS_THAT_ARE_NOT_ABSOLUTE
        for field, override in (
            ("inferenceUrl", {"inferenceUrl": value}),
            ("healthUri", {"healthUri": value}),
            ("health.uri", {"health": {**HEALTH, "uri": value}}),
        )
    ),
]


@pytest.mark.parametrize(("case", "override", "field"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES])
async def test_create_validation_rules(
    admin_client: httpx.AsyncClient, case: str, override: dict[str, Any], field: str
) -> None:
    body = function_body("valid")
    for key, value in override.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    response = await admin_client.post("/v2/nvcf/functions", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "urn:nv-boot:problem-details:bad-request"
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert problem["instance"] == "/v2/nvcf/functions"
    assert problem["field"] == field
    assert f"field '{field}'" in problem["detail"]


async def test_a_union_names_its_field_once_with_every_rule(admin_client: httpx.AsyncClient) -> None:
    """A secret's value is a string or an object: a number breaks both, at `secrets.0.value` (not at
    pydantic's `secrets.0.value.str`), and the problem says both."""
    body = function_body("union", secrets=[{"name": "A", "value": 5}])
    problem = (await admin_client.post("/v2/nvcf/functions", json=body)).json()
    assert problem["field"] == "secrets.0.value"
    assert "valid string" in problem["rule"] and " or " in problem["rule"] and "dictionary" in problem["rule"]


@pytest.mark.parametrize("value", PATHS_THAT_ARE_NOT_ABSOLUTE)
async def test_create_version_needs_absolute_paths(admin_client: httpx.AsyncClient, value: str) -> None:
    fn = (await admin_client.post("/v2/nvcf/functions", json=function_body("paths"))).json()["function"]
    for field, override in (
        ("inferenceUrl", {"inferenceUrl": value}),
        ("health.uri", {"health": {**HEALTH, "uri": value}}),
    ):
        response = await admin_client.post(
            f"/v2/nvcf/functions/{fn['id']}/versions", json=function_body("paths", **override)
        )
        assert response.status_code == 400, response.text
        problem = response.json()
        assert problem["field"] == field and problem["rule"].startswith("must be an absolute path")
    ok = function_body("paths", inferenceUrl="/v1/chat?x=1", health={**HEALTH, "uri": "/health/ready"})
    assert (await admin_client.post(f"/v2/nvcf/functions/{fn['id']}/versions", json=ok)).status_code == 200


async def test_a_function_needs_an_image_or_a_command_line(admin_client: httpx.AsyncClient) -> None:
    body = function_body("no-args")
    del body["containerArgs"]
    # an image alone: the container backend runs its own CMD
    assert (await admin_client.post("/v2/nvcf/functions", json=body)).status_code == 200
    del body["containerImage"]
    response = await admin_client.post("/v2/nvcf/functions", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == "containerArgs"
    assert "containerImage" in response.json()["detail"] and "containerArgs" in response.json()["detail"]
    helm = {"name": "chart", "inferenceUrl": "/", "helmChart": "oci://x/c", "helmChartServiceName": "svc"}
    assert (await admin_client.post("/v2/nvcf/functions", json=helm)).status_code == 200


# what the tests, examples and docs pull, and the other forms Docker and Podman take
VALID_IMAGES = [
    "nvcr.io/example/echo:1.0",
    "local/echo",
    "example/inv:1",
    "python:3",
    "library/python:3",
    "i",
    "localhost/fnplane-echo:test",
    "127.0.0.1:5000/team/echo:1",
    "registry.example.com:443/a/b/c:v1.2.3-rc_1",
    "[::1]:5000/echo",
    "nvcr.io/acme/model@sha256:" + "0123456789abcdef" * 4,
    "nvcr.io/acme/model:1@sha512:" + "a" * 128,
    "my_org/my__image--x.y",
]
INVALID_IMAGES = [
    ("foo bar", "invalid reference format"),
    ("-rf", "invalid reference format"),
    ("UPPER/Case:Bad", "must be lowercase"),
    ("::::", "invalid reference format"),
    ("a/b:c:d", "invalid reference format"),
    ("x:tag@sha256:zz", "invalid reference format"),
    ("x@sha256:" + "A" * 64, "64 lowercase hex digits"),
    ("x@md5:" + "0" * 32, "unsupported digest algorithm"),
    ("0123456789abcdef" * 4, "image id"),
    ("a/" + "b" * 300, "at most 255"),
    ("nvcr.io/x:" + "t" * 129, "invalid reference format"),
    ("nvcr.io/x\n", "invalid reference format"),
    ("a" * 2000, "at most 1024 characters"),
]


async def test_container_image_is_an_image_reference(admin_client: httpx.AsyncClient) -> None:
    """A reference Docker or Podman could never pull is a 400 at registration, not a failed deploy."""
    fn = await create_function(admin_client, name="images")
    for index, (image, reason) in enumerate(INVALID_IMAGES):
        body = function_body(f"bad-{index}", containerImage=image)
        for path in ("/v2/nvcf/functions", f"/v2/nvcf/functions/{fn['id']}/versions"):
            response = await admin_client.post(path, json=body)
            assert response.status_code == 400, (image, response.text)
            problem = response.json()
            assert problem["field"] == "containerImage", problem
            assert reason in problem["rule"], problem
            if "characters" not in reason:
                assert problem["rule"].startswith("must be an image reference"), problem
    listed = (await admin_client.get("/v2/nvcf/functions")).json()["functions"]
    assert [f["name"] for f in listed] == ["images"]
    for index, image in enumerate(VALID_IMAGES):
        response = await admin_client.post(
            "/v2/nvcf/functions", json=function_body(f"ok-{index}", containerImage=image)
        )
        assert response.status_code == 200, (image, response.text)
        assert response.json()["function"]["containerImage"] == image
    # blank is no image (a command line alone), as before
    response = await admin_client.post("/v2/nvcf/functions", json=function_body("blank", containerImage=" "))
    assert response.status_code == 200, response.text
    assert "containerImage" not in response.json()["function"]


async def test_malformed_json_is_400(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post(
        "/v2/nvcf/functions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_versions_list_ids_get_and_delete(admin_client: httpx.AsyncClient) -> None:
    first = await create_function(admin_client, name="multi")
    response = await admin_client.post(
        f"/v2/nvcf/functions/{first['id']}/versions", json=function_body("multi-v2")
    )
    assert response.status_code == 200
    second = response.json()["function"]
    assert second["id"] == first["id"] and second["versionId"] != first["versionId"]
    assert second["status"] == "INACTIVE"

    versions = (await admin_client.get(f"/v2/nvcf/functions/{first['id']}/versions")).json()["functions"]
    assert {v["versionId"] for v in versions} == {first["versionId"], second["versionId"]}
    listed = (await admin_client.get("/v2/nvcf/functions")).json()["functions"]
    assert {v["versionId"] for v in listed} >= {first["versionId"], second["versionId"]}
    ids = (await admin_client.get("/v2/nvcf/functions/ids")).json()["functionIds"]
    assert ids.count(first["id"]) == 1

    got = await admin_client.get(f"/v2/nvcf/functions/{first['id']}/versions/{second['versionId']}")
    assert got.status_code == 200 and got.json()["function"]["name"] == "multi-v2"

    deleted = await admin_client.delete(f"/v2/nvcf/functions/{first['id']}/versions/{second['versionId']}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await admin_client.get(f"/v2/nvcf/functions/{first['id']}/versions/{second['versionId']}")
    assert gone.status_code == 404
    assert gone.json()["type"] == "urn:nv-boot:problem-details:not-found"
    again = await admin_client.delete(f"/v2/nvcf/functions/{first['id']}/versions/{second['versionId']}")
    assert again.status_code == 404
    # deleting the last version removes the function
    await admin_client.delete(f"/v2/nvcf/functions/{first['id']}/versions/{first['versionId']}")
    assert (await admin_client.get(f"/v2/nvcf/functions/{first['id']}/versions")).status_code == 404


async def test_a_trailing_slash_is_the_same_path_not_a_redirect(admin_client: httpx.AsyncClient) -> None:
    created = await admin_client.post("/v2/nvcf/functions/", json=function_body("slash"))
    assert created.status_code == 200, (created.status_code, created.headers)
    fn = created.json()["function"]
    got = await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}/")
    assert got.status_code == 200 and got.json()["function"]["name"] == "slash"
    missing = await admin_client.get(f"/v2/nvcf/deployments/functions/{fn['id']}/versions/{fn['versionId']}/")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_unknown_ids_are_404(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client, name="known")
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (await admin_client.get(f"/v2/nvcf/functions/{unknown}/versions")).status_code == 404
    assert (await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{unknown}")).status_code == 404
    assert (
        await admin_client.post(f"/v2/nvcf/functions/{unknown}/versions", json=function_body())
    ).status_code == 404


async def test_update_tags_and_rate_limit(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client, name="upd", tags=["a"])
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    response = await admin_client.put(path, json={"tags": ["b", "c"], "description": "ignored"})
    assert response.status_code == 200
    assert response.json()["function"]["tags"] == ["b", "c"]
    assert response.json()["function"]["description"] == "upd"
    response = await admin_client.put(
        f"/v2/nvcf/metadata/functions/{fn['id']}/versions/{fn['versionId']}",
        json={"rateLimit": {"rateLimit": "5-S"}},
    )
    assert response.status_code == 200
    assert response.json()["function"]["rateLimit"] == {"rateLimit": "5-S", "syncCheck": False}
    assert response.json()["function"]["tags"] == ["b", "c"]
    nothing = await admin_client.put(path, json={"description": "only a non-updatable field"})
    assert nothing.status_code == 400
    bad = await admin_client.put(path, json={"tags": ["bad tag"]})
    assert bad.status_code == 400 and bad.json()["field"] == "tags"


async def test_legacy_rate_limit_endpoints_set_and_clear(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    """nvcf-api.md 1.8: PUT sets the rate limit (the update body), DELETE is the only way to clear it."""
    fn = await create_function(admin_client, name="limited", tags=["kept"])
    path = f"/v2/nvcf/ratelimit/functions/{fn['id']}/versions/{fn['versionId']}"
    version = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    response = await admin_client.put(path, json={"rateLimit": {"rateLimit": "10-M", "perUserRate": "2-S"}})
    assert response.status_code == 204, response.text
    assert response.content == b""
    seen = (await admin_client.get(version)).json()["function"]
    assert seen["rateLimit"] == {"rateLimit": "10-M", "perUserRate": "2-S", "syncCheck": False}
    assert seen["tags"] == ["kept"]
    bad = await admin_client.put(path, json={"rateLimit": {"rateLimit": "10-X"}})
    assert bad.status_code == 400 and bad.json()["field"] == "rateLimit.rateLimit", bad.text
    assert (await admin_client.put(path, json={})).status_code == 400
    cleared = await admin_client.delete(path)
    assert cleared.status_code == 204, cleared.text
    assert "rateLimit" not in (await admin_client.get(version)).json()["function"]
    assert (await admin_client.delete(path)).status_code == 204  # nothing left to clear
    # update_function on the caller's own version only
    lister = await make_client([LIST_FUNCTIONS])
    assert (await lister.delete(path)).status_code == 403
    stranger = await make_client(nca_id="stranger-account")
    assert (await stranger.put(path, json={"rateLimit": {"rateLimit": "1-S"}})).status_code == 404
    assert (await stranger.delete(path)).status_code == 404
    unknown = f"/v2/nvcf/ratelimit/functions/{fn['id']}/versions/00000000-0000-0000-0000-000000000000"
    assert (await admin_client.delete(unknown)).status_code == 404


async def test_visibility_filter(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    mine = await create_function(admin_client, name="mine")
    other = await make_client(nca_id="other-account")
    theirs = await create_function(other, name="theirs")
    shared = await other.post(
        f"/v2/nvcf/authorizations/functions/{theirs['id']}",
        json={"authorizedParties": [{"ncaId": "nvcf-default"}]},
    )
    assert shared.status_code == 200, shared.text

    async def names(visibility: str | None) -> set[str]:
        params = {"visibility": visibility} if visibility else {}
        response = await admin_client.get("/v2/nvcf/functions", params=params)
        assert response.status_code == 200
        return {f["name"] for f in response.json()["functions"]}

    assert await names(None) == {"mine", "theirs"}
    assert await names("private") == {"mine"}
    assert await names("AUTHORIZED") == {"theirs"}
    assert await names("public") == set()
    assert await names("private,authorized") == {"mine", "theirs"}
    # a repeated parameter is a list too (Spring's List binding), with comma lists inside it
    repeated = await admin_client.get(
        "/v2/nvcf/functions", params=[("visibility", "authorized"), ("visibility", "private")]
    )
    assert {f["name"] for f in repeated.json()["functions"]} == {"mine", "theirs"}
    mixed = await admin_client.get(
        "/v2/nvcf/functions/ids", params=[("visibility", "public,authorized"), ("visibility", "private")]
    )
    assert set(mixed.json()["functionIds"]) == {mine["id"], theirs["id"]}
    one_bad = await admin_client.get(
        "/v2/nvcf/functions", params=[("visibility", "private"), ("visibility", "everyone")]
    )
    assert one_bad.status_code == 400 and one_bad.json()["field"] == "visibility", one_bad.text
    bad = await admin_client.get("/v2/nvcf/functions", params={"visibility": "everyone"})
    assert bad.status_code == 400
    ids = (await admin_client.get("/v2/nvcf/functions/ids", params={"visibility": "authorized"})).json()
    assert ids == {"functionIds": [theirs["id"]]}
    # the other account does not see mine
    assert {f["name"] for f in (await other.get("/v2/nvcf/functions")).json()["functions"]} == {"theirs"}
    assert (await other.get(f"/v2/nvcf/functions/{mine['id']}/versions")).status_code == 404


async def test_shared_function_is_blanked(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    owner = await make_client(nca_id="owner-account")
    fn = await create_function(owner, name="shared-fn", rateLimit={"rateLimit": "1-S"})
    await owner.post(
        f"/v2/nvcf/authorizations/functions/{fn['id']}",
        json={"authorizedParties": [{"ncaId": "nvcf-default"}]},
    )
    seen = (await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")).json()[
        "function"
    ]
    assert seen["ownedByDifferentAccount"] is True
    for blank in (
        "inferenceUrl",
        "inferencePort",
        "containerArgs",
        "containerImage",
        "rateLimit",
        "activeInstances",
    ):
        assert blank not in seen
    assert seen["name"] == "shared-fn" and seen["status"] == "INACTIVE"
    # sharing does not allow managing
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    assert (await admin_client.put(path, json={"tags": ["x"]})).status_code == 404
    assert (await admin_client.delete(path)).status_code == 404
    assert (
        await admin_client.post(f"/v2/nvcf/functions/{fn['id']}/versions", json=function_body())
    ).status_code == 404


async def test_api_key_resources_403_vs_404(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    a = await create_function(admin_client, name="fa")
    b = await create_function(admin_client, name="fb")
    only_a = await make_client(
        [LIST_FUNCTIONS, LIST_FUNCTIONS_DETAILS, REGISTER_FUNCTION],
        resources=[{"type": "function", "id": f"{a['id']}/*"}],
    )
    listed = (await only_a.get("/v2/nvcf/functions")).json()["functions"]
    assert {f["name"] for f in listed} == {"fa"}
    assert (await only_a.get(f"/v2/nvcf/functions/{a['id']}/versions/{a['versionId']}")).status_code == 200
    # b exists in the account but the key does not cover it -> 403; an unknown function -> 404
    forbidden = await only_a.get(f"/v2/nvcf/functions/{b['id']}/versions/{b['versionId']}")
    assert forbidden.status_code == 403
    assert forbidden.json()["type"] == "urn:nv-boot:problem-details:forbidden"
    assert (await only_a.get(f"/v2/nvcf/functions/{b['id']}/versions")).status_code == 403
    unknown = "00000000-0000-0000-0000-000000000001"
    assert (await only_a.get(f"/v2/nvcf/functions/{unknown}/versions")).status_code == 404
    # without account-functions/* the key cannot register a new function, but may add a version to `a`
    assert (await only_a.post("/v2/nvcf/functions", json=function_body())).status_code == 403
    assert (
        await only_a.post(f"/v2/nvcf/functions/{a['id']}/versions", json=function_body())
    ).status_code == 200
    assert (
        await only_a.post(f"/v2/nvcf/functions/{b['id']}/versions", json=function_body())
    ).status_code == 403


async def test_active_instances_and_secrets_need_details_scope(
    admin_client: httpx.AsyncClient, make_client: Any
) -> None:
    fn = await create_function(admin_client, name="details", secrets=[{"name": "S", "value": "v"}])
    path = f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"
    plain = await make_client([LIST_FUNCTIONS])
    assert "secrets" not in (await plain.get(path)).json()["function"]
    detailed = await make_client([LIST_FUNCTIONS_DETAILS])
    body = (await detailed.get(path)).json()["function"]
    assert body["secrets"] == ["S"]
    assert body["activeInstances"] == []


async def test_scopes_and_credentials(http: httpx.AsyncClient, make_client: Any) -> None:
    assert (await http.get("/v2/nvcf/functions")).status_code == 401
    assert (await http.post("/v2/nvcf/functions", json=function_body())).status_code == 401
    lister = await make_client([LIST_FUNCTIONS])
    assert (await lister.get("/v2/nvcf/functions")).status_code == 200
    assert (await lister.post("/v2/nvcf/functions", json=function_body())).status_code == 403
    jwt = await make_client([REGISTER_FUNCTION], kind="jwt")
    assert (await jwt.post("/v2/nvcf/functions", json=function_body("by-jwt"))).status_code == 200


async def test_max_functions_per_account(
    admin_client: httpx.AsyncClient, auth: Any, make_client: Any
) -> None:
    client = await make_client(nca_id="small-account")
    await auth.accounts.update("small-account", max_functions_allowed=1)
    assert (await client.post("/v2/nvcf/functions", json=function_body("one"))).status_code == 200
    second = await client.post("/v2/nvcf/functions", json=function_body("two"))
    assert second.status_code == 400
    assert "maximum" in second.json()["detail"]


async def test_the_health_port_is_1_to_65535(admin_client: httpx.AsyncClient) -> None:
    for port, rule in ((0, "greater than 0"), (65536, "less than or equal to 65535")):
        body = function_body("health-port", health={**HEALTH, "port": port})
        response = await admin_client.post("/v2/nvcf/functions", json=body)
        assert response.status_code == 400, response.text
        problem = response.json()
        assert problem["field"] == "health.port" and rule in problem["rule"], problem
    for port in (1, 65535):
        fn = await create_function(admin_client, name=f"health-port-{port}", health={**HEALTH, "port": port})
        assert fn["health"]["port"] == port
