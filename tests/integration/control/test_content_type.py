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
