"""`GET /v3/openapi` documents the answers the control API really gives (found by tests/e2e/test_api_fuzz.py).

Every error is a problem document: FastAPI's 422 `HTTPValidationError` is gone (fnplane answers bad input
400), and each operation lists the problem statuses its inputs and its credential can produce.
"""

from __future__ import annotations

import httpx

from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA


async def _document(http: httpx.AsyncClient) -> dict:
    response = await http.get("/v3/openapi")
    assert response.status_code == 200
    return dict(response.json())


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


async def test_no_operation_documents_fastapis_422(http: httpx.AsyncClient) -> None:
    document = await _document(http)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert [(m, p) for m, p, op in _operations(document) if "422" in op["responses"]] == []


async def test_every_documented_error_is_a_problem_document(http: httpx.AsyncClient) -> None:
    document = await _document(http)
    assert document["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    for method, path, op in _operations(document):
        if path == "/token":  # OAuth2 clients read RFC 6749 errors there
            continue
        errors = {status: r for status, r in op["responses"].items() if status >= "400"}
        assert "503" in errors, (method, path)
        if op.get("security"):
            assert {"401", "403", "404", "429"} <= set(errors), (method, path)
        if op.get("parameters") or "requestBody" in op:
            assert "400" in errors, (method, path)
        for status, response in errors.items():
            schema = response["content"][PROBLEM_CONTENT_TYPE]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)


async def test_a_400_answer_is_the_documented_problem(admin_client: httpx.AsyncClient) -> None:
    document = await _document(admin_client)
    response = await admin_client.post("/v2/nvcf/functions", json={"name": "-bad", "inferenceUrl": "/x"})
    assert response.status_code == 400
    assert "400" in document["paths"]["/v2/nvcf/functions"]["post"]["responses"]
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    body = response.json()
    assert set(PROBLEM_SCHEMA["required"]) <= set(body)
    assert body["field"] == "name" and body["rule"]


async def test_the_token_endpoint_documents_its_form_and_oauth2_errors(http: httpx.AsyncClient) -> None:
    token = (await _document(http))["paths"]["/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert set(token["responses"]) >= {"200", "400", "401"}
    assert "error" in token["responses"]["400"]["content"]["application/json"]["schema"]["properties"]
    refused = await http.post("/token", data={"grant_type": "client_credentials"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


async def test_a_wrong_method_is_405_with_allow(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.request("TRACE", "/v2/nvcf/functions")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


async def test_head_answers_as_get_without_the_body(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    """RFC 9110 9.3.2: HEAD on every GET path, with the GET's status and headers and no body."""
    for path in ("/v2/nvcf/functions", "/v3/openapi", "/v1/keys"):
        got = await admin_client.get(path)
        head = await admin_client.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    # authenticated and refused as the GET is
    unauthenticated = await http.head("/v2/nvcf/functions")
    assert unauthenticated.status_code == 401 and unauthenticated.content == b""
    unknown = await admin_client.head("/v2/nvcf/functions/00000000-0000-0000-0000-000000000000/versions")
    assert unknown.status_code == 404
    # not where there is no GET
    post_only = await admin_client.head("/token")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"


async def test_a_400_naming_a_field_names_its_rule(admin_client: httpx.AsyncClient) -> None:
    # the cluster registration's own checks (a blank group) named the field only
    body = {"agentId": "a", "group": " ", "region": "local", "inventory": []}
    response = await admin_client.put("/v1/fnplane/clusters/node-a", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == "group"
    assert response.json()["rule"] == "must not be blank"


async def test_the_documented_rules_match_what_is_accepted(admin_client: httpx.AsyncClient) -> None:
    schemas = (await _document(admin_client))["components"]["schemas"]
    # an optional clientId may be null (a generated one): the document says so
    client_id = schemas["CreateServiceAccountRequest"]["properties"]["clientId"]
    assert {"type": "null"} in client_id["anyOf"] and client_id["pattern"]
    created = await admin_client.post(
        "/v2/nvcf/service-accounts", json={"clientId": None, "scopes": ["list_functions"]}
    )
    assert created.status_code == 200, created.text
    # a key's description is required and patterned: null is refused, as documented
    description = schemas["CreateKeyRequest"]["properties"]["description"]
    assert description["type"] == "string" and "description" in schemas["CreateKeyRequest"]["required"]
    refused = await admin_client.post("/v1/keys", json={"description": None})
    assert refused.status_code == 400 and refused.json()["field"] == "description"
