"""Text the database cannot hold never reaches it: a lone surrogate escape (`"\\ud800"`) or a NUL
(`"\\u0000"`) in any string of a JSON body is a 400 naming the field and the rule; a NUL in a path is a
404 and in a query parameter a 400 naming it, for every route, before routing. On SQLite and
PostgreSQL (where both were 500s: UTF-8 cannot encode a surrogate, and PostgreSQL's text holds no NUL).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest
from functions_helpers import create_function, function_body

from fnplane.control.app import ControlApp
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE

SURROGATE = "\ud800"
NUL = "\x00"


def _raw(body: Any) -> str:
    """The JSON text of `body` with every non-ASCII character as an escape (a lone surrogate too)."""
    return json.dumps(body, ensure_ascii=True)


def _assert_problem(response: httpx.Response, status: int, field: str | None, rule_part: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    problem = response.json()
    if field is not None:
        assert problem["field"] == field, problem
        assert rule_part in problem["rule"], problem
    assert rule_part in problem["detail"], problem


_REGISTRY_LOGIN = base64.b64encode(b"user:pass").decode()
# (case, method, path, body, field): a bad string in a field of each kind of body the API takes
BODIES: list[tuple[str, str, str, Any, str]] = [
    (
        "function description",
        "POST",
        "/v2/nvcf/functions",
        function_body(description="a" + SURROGATE),
        "description",
    ),
    ("a tag", "POST", "/v2/nvcf/functions", function_body(tags=["ok", "x" + SURROGATE]), "tags.1"),
    (
        "a secret's value",
        "POST",
        "/v2/nvcf/functions",
        function_body(secrets=[{"name": "S", "value": SURROGATE + "tail"}]),
        "secrets.0.value",
    ),
    (
        "a key inside a secret's object value",
        "POST",
        "/v2/nvcf/functions",
        function_body(secrets=[{"name": "S", "value": {"k" + SURROGATE: 1}}]),
        "secrets.0.value.k\\ud800",
    ),
    (
        "a registry credential's description",
        "POST",
        "/v2/nvcf/registry-credentials",
        {
            "registryHostname": "nvcr.io",
            "secret": {"name": "reg", "value": _REGISTRY_LOGIN},
            "artifactTypes": ["CONTAINER"],
            "description": SURROGATE,
        },
        "description",
    ),
    ("an account's name", "PATCH", "/v2/nvcf/accounts/nvcf-default", {"name": "acct" + SURROGATE}, "name"),
    ("an api key's description", "POST", "/v1/keys", {"description": SURROGATE}, "description"),
    ("the whole body", "POST", "/v2/nvcf/functions", SURROGATE, "body"),
]


def _with(value: Any, bad: str) -> Any:
    """`value` with each lone surrogate replaced by `bad`."""
    if isinstance(value, str):
        return value.replace(SURROGATE, bad)
    if isinstance(value, list):
        return [_with(item, bad) for item in value]
    if isinstance(value, dict):
        return {_with(key, bad): _with(item, bad) for key, item in value.items()}
    return value


@pytest.mark.parametrize(
    ("bad", "rule_part"), [(SURROGATE, "valid Unicode text"), (NUL, "NUL")], ids=["surrogate", "nul"]
)
@pytest.mark.parametrize(("case", "method", "path", "body", "field"), BODIES, ids=[b[0] for b in BODIES])
async def test_a_string_the_database_cannot_hold_is_a_400_naming_its_field(
    admin_client: httpx.AsyncClient,
    case: str,
    method: str,
    path: str,
    body: Any,
    field: str,
    bad: str,
    rule_part: str,
) -> None:
    content = _raw(_with(body, bad))
    assert ("\\ud800" if bad == SURROGATE else "\\u0000") in content
    response = await admin_client.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )
    # a key is named with the character escaped
    _assert_problem(response, 400, field.replace("\\ud800", f"\\u{ord(bad):04x}"), rule_part)
    # nothing was stored
    assert (await admin_client.get("/v2/nvcf/functions")).json()["functions"] == []
    assert (await admin_client.get("/v2/nvcf/registry-credentials")).json()["registryCredentials"] == []
    account = (await admin_client.get("/v2/nvcf/accounts/nvcf-default")).json()["account"]
    assert bad not in account["name"]


async def test_a_surrogate_pair_and_other_text_are_stored_and_answered(
    admin_client: httpx.AsyncClient,
) -> None:
    description = "emoji \U0001f600, \u00e9, tab\tand \\u0000 as six characters"
    environment = [{"key": "GREETING", "value": "gr\u00fc\u00df \U0001f44b"}]
    content = _raw(function_body(description=description, containerEnvironment=environment))
    assert "\\ud83d\\ude00" in content  # json.dumps writes the emoji as its surrogate pair
    created = await admin_client.post("/v2/nvcf/functions", content=content)
    assert created.status_code == 200, created.text
    fn = created.json()["function"]
    got = await admin_client.get(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")
    assert got.json()["function"]["description"] == description
    assert got.json()["function"]["containerEnvironment"] == environment


async def test_the_first_bad_value_is_named_whatever_it_is(admin_client: httpx.AsyncClient) -> None:
    """One parse checks numbers and strings: whichever comes first in the body is the one named."""
    content = '{"name": "x", "inferenceUrl": "/e", "a": [1, "\\u0000"], "b": NaN}'
    response = await admin_client.post("/v2/nvcf/functions", content=content)
    _assert_problem(response, 400, "a.1", "NUL")
    content = '{"name": "x", "inferenceUrl": "/e", "b": NaN, "a": [1, "\\u0000"]}'
    response = await admin_client.post("/v2/nvcf/functions", content=content)
    _assert_problem(response, 400, "b", "finite JSON number")


def _templates(app: ControlApp) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if "{" in path
        for method in operations
    ]


async def test_a_nul_in_any_path_parameter_is_a_404_problem(
    control_app: ControlApp, admin_client: httpx.AsyncClient
) -> None:
    fn = await create_function(admin_client, name="real")
    templates = _templates(control_app)
    assert len(templates) > 20
    failures = []
    for method, template in templates:
        names = re.findall(r"{(\w+)}", template)
        for bad in names:
            # the other parameters name real things where they can, so the NUL alone is what is wrong
            values = {name: fn["id"] if name == "functionId" else fn["versionId"] for name in names}
            values[bad] = "abc%00def"
            path = template.format(**values)
            body = {} if method in ("POST", "PUT", "PATCH") else None
            response = await admin_client.request(method, path, json=body)
            if response.status_code != 404 or not response.headers["content-type"].startswith(
                PROBLEM_CONTENT_TYPE
            ):
                failures.append(f"{method} {template} ({bad}): {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)
    # the one the defect was found with
    response = await admin_client.get("/v2/nvcf/registry-credentials/%00")
    _assert_problem(response, 404, None, "NUL")
    assert response.json()["instance"] == "/v2/nvcf/registry-credentials/\x00"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("visibility=%00", "visibility"),
        ("visibility=private&visibility=pri%00vate", "visibility"),
        ("artifactType=CONTAINER%00", "artifactType"),
        ("a%00b=1", "a\\u0000b"),
    ],
)
async def test_a_nul_in_a_query_parameter_is_a_400_naming_it(
    admin_client: httpx.AsyncClient, query: str, field: str
) -> None:
    path = "/v2/nvcf/registry-credentials" if "artifactType" in query else "/v2/nvcf/functions"
    response = await admin_client.get(f"{path}?{query}")
    _assert_problem(response, 400, field, "NUL")


async def test_a_token_for_a_client_id_with_nul_is_refused_as_unknown(http: httpx.AsyncClient) -> None:
    """The client id of HTTP Basic (or the form) goes to the database: one with NUL names no client."""
    basic = base64.b64encode(b"some\x00client:secret").decode()
    response = await http.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    form = {"grant_type": "client_credentials", "client_id": "some\x00client", "client_secret": "s"}
    response = await http.post("/token", data=form)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text


def _long(length: int) -> str:
    return "a" * length


_CLUSTER = {"agentId": "agent-long", "group": "local", "region": "local", "inventory": []}
_HELM = {"name": "chart", "inferenceUrl": "/", "helmChart": "oci://x/c", "helmChartServiceName": "svc"}
# (case, method, path, body, field): one character past what the field's column holds
TOO_LONG: list[tuple[str, str, str, Any, str]] = [
    (
        "inferenceUrl",
        "POST",
        "/v2/nvcf/functions",
        function_body(inferenceUrl="/" + _long(2048)),
        "inferenceUrl",
    ),
    ("helmChart", "POST", "/v2/nvcf/functions", {**_HELM, "helmChart": "oci://" + _long(2048)}, "helmChart"),
    (
        "helmChartServiceName",
        "POST",
        "/v2/nvcf/functions",
        {**_HELM, "helmChartServiceName": _long(257)},
        "helmChartServiceName",
    ),
    (
        "adminClientId",
        "POST",
        "/v2/nvcf/accounts/long-one",
        {"name": "LongOne", "adminClientId": _long(129)},
        "adminClientId",
    ),
    (
        "associated client",
        "PATCH",
        "/v2/nvcf/accounts/nvcf-default/clients/associate",
        {"adminClientId": _long(129)},
        "adminClientId",
    ),
    (
        "party ncaId",
        "POST",
        "/v2/nvcf/authorizations/functions/{id}",
        {"authorizedParties": [{"ncaId": _long(65)}]},
        "authorizedParties.0.ncaId",
    ),
    (
        "party clientId",
        "POST",
        "/v2/nvcf/authorizations/functions/{id}",
        {"authorizedParties": [{"ncaId": "friend", "clientId": _long(129)}]},
        "authorizedParties.0.clientId",
    ),
    ("clusterName", "PUT", "/v1/fnplane/clusters/" + _long(129), _CLUSTER, "clusterName"),
    ("cluster group", "PUT", "/v1/fnplane/clusters/long", {**_CLUSTER, "group": _long(129)}, "group"),
    ("cluster region", "PUT", "/v1/fnplane/clusters/long", {**_CLUSTER, "region": _long(65)}, "region"),
]


@pytest.mark.parametrize(("case", "method", "path", "body", "field"), TOO_LONG, ids=[c[0] for c in TOO_LONG])
async def test_a_string_longer_than_its_column_is_a_400_naming_its_field(
    admin_client: httpx.AsyncClient, case: str, method: str, path: str, body: Any, field: str
) -> None:
    """PostgreSQL refuses a value past a varchar's length (it was a 500 there; SQLite stored it)."""
    if "{id}" in path:
        path = path.format(id=(await create_function(admin_client, name="shared"))["id"])
    response = await admin_client.request(method, path, json=body)
    _assert_problem(response, 400, field, "at most")
