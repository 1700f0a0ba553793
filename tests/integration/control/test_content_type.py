"""Request bodies are JSON: another declared media type is 415, a missing Content-Type is read as JSON."""

from __future__ import annotations

import json

import httpx
import pytest

FUNCTION = {"name": "ct-check", "inferenceUrl": "/echo", "containerArgs": "python3 examples/echo_server.py"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_non_json_body_is_415_problem(admin_client: httpx.AsyncClient, content_type: str) -> None:
    response = await admin_client.post(
        "/v2/nvcf/functions", content=json.dumps(FUNCTION), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 415
    assert content_type in body["detail"]
    listed = await admin_client.get("/v2/nvcf/functions")
    assert listed.json()["functions"] == []


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8"])
async def test_json_with_or_without_the_header_is_accepted(
    admin_client: httpx.AsyncClient, content_type: str | None
) -> None:
    request = admin_client.build_request("POST", "/v2/nvcf/functions", content=json.dumps(FUNCTION))
    assert "content-type" not in request.headers
    if content_type:
        request.headers["content-type"] = content_type
    response = await admin_client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["function"]["name"] == "ct-check"


async def test_the_token_endpoint_still_takes_a_form(http: httpx.AsyncClient) -> None:
    response = await http.post("/token", data={"grant_type": "client_credentials"})
    assert response.status_code != 415


NOT_JSON_NUMBERS = [
    ("NaN", '{"name": "ct-check", "inferenceUrl": "/echo", "inferencePort": NaN}', "inferencePort"),
    ("Infinity", '{"name": "ct-check", "inferenceUrl": "/echo", "unknownField": Infinity}', "unknownField"),
    ("past a double", '{"name": "ct-check", "inferenceUrl": "/e", "tags": ["a"], "x": [1, 1e400]}', "x.1"),
    (
        "nested",
        '{"name": "ct-check", "inferenceUrl": "/e", "secrets": [{"name": "S", "value": {"k": -Infinity}}]}',
        "secrets.0.value.k",
    ),
    ("the whole body", "NaN", "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), NOT_JSON_NUMBERS, ids=[c[0] for c in NOT_JSON_NUMBERS])
async def test_a_number_json_does_not_have_is_a_400_naming_its_field(
    admin_client: httpx.AsyncClient, case: str, body: str, field: str
) -> None:
    """NaN, Infinity and 1e400 are Python's, not JSON's: 400 wherever they are, even in a field the
    route ignores or a free-form object, before any route sees the body."""
    response = await admin_client.post(
        "/v2/nvcf/functions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == field
    assert "finite JSON number" in problem["rule"]
    assert (await admin_client.get("/v2/nvcf/functions")).json()["functions"] == []


async def test_large_but_finite_numbers_and_broken_json_keep_their_answers(
    admin_client: httpx.AsyncClient,
) -> None:
    finite = await admin_client.post(
        "/v2/nvcf/functions",
        content=json.dumps({**FUNCTION, "unknownField": 1e308, "other": -1.5e-300}),
        headers={"Content-Type": "application/json"},
    )
    assert finite.status_code == 200, finite.text
    broken = await admin_client.post(
        "/v2/nvcf/functions", content='{"name": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["field"] == "body", broken.text
    patch = await admin_client.patch("/v2/nvcf/accounts/nvcf-default", content='{"maxFunctionsAllowed": NaN}')
    assert patch.status_code == 400 and patch.json()["field"] == "maxFunctionsAllowed", patch.text
