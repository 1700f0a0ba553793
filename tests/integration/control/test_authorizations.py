"""Sharing (nvcf-api.md 1.3) and what sharing grants: listing and invoking, through the AccessAuthority."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from functions_helpers import create_function, function_body

from fnplane.shared.errors import ForbiddenError, NotFoundError, UnauthorizedError
from fnplane.shared.scopes import ACCOUNT_SETUP, AUTHORIZE_CLIENTS, INVOKE_FUNCTION, LIST_FUNCTIONS

BASE = "/v2/nvcf/authorizations/functions"


def parties(*nca_ids: str) -> dict[str, Any]:
    return {"authorizedParties": [{"ncaId": n} for n in nca_ids]}


async def test_function_level_sharing_lifecycle(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    fn = await create_function(admin_client, name="to-share")
    response = await admin_client.post(f"{BASE}/{fn['id']}", json=parties("acme", "globex"))
    assert response.status_code == 200
    assert response.json() == {
        "function": {
            "id": fn["id"],
            "ncaId": "nvcf-default",
            "authorizedParties": [{"ncaId": "acme"}, {"ncaId": "globex"}],
        }
    }
    added = await admin_client.patch(f"{BASE}/{fn['id']}/add", json={"authorizedParty": {"ncaId": "initech"}})
    assert added.status_code == 200
    assert [p["ncaId"] for p in added.json()["function"]["authorizedParties"]] == [
        "acme",
        "globex",
        "initech",
    ]
    duplicate = await admin_client.patch(
        f"{BASE}/{fn['id']}/add", json={"authorizedParty": {"ncaId": "acme"}}
    )
    assert duplicate.status_code == 409
    removed = await admin_client.patch(
        f"{BASE}/{fn['id']}/remove", json={"authorizedParty": {"ncaId": "globex"}}
    )
    assert [p["ncaId"] for p in removed.json()["function"]["authorizedParties"]] == ["acme", "initech"]
    absent = await admin_client.patch(
        f"{BASE}/{fn['id']}/remove", json={"authorizedParty": {"ncaId": "globex"}}
    )
    assert absent.status_code == 404
    listed = await admin_client.get(f"{BASE}/{fn['id']}")
    assert listed.status_code == 200
    (entry,) = listed.json()["functions"]
    assert entry["versionId"] == fn["versionId"]
    assert [p["ncaId"] for p in entry["authorizedParties"]] == ["acme", "initech"]
    cleared = await admin_client.delete(f"{BASE}/{fn['id']}")
    assert cleared.status_code == 200
    assert cleared.json()["function"]["authorizedParties"] == []
    # add needs an existing list
    assert (
        await admin_client.patch(f"{BASE}/{fn['id']}/add", json={"authorizedParty": {"ncaId": "acme"}})
    ).status_code == 404


async def test_version_level_sharing_inherits_function_level(admin_client: httpx.AsyncClient) -> None:
    fn = await create_function(admin_client, name="versioned")
    version_path = f"{BASE}/{fn['id']}/versions/{fn['versionId']}"
    await admin_client.post(f"{BASE}/{fn['id']}", json=parties("acme"))
    posted = await admin_client.post(version_path, json=parties("globex"))
    assert posted.status_code == 200
    # the POST answers the version-level list only
    assert [p["ncaId"] for p in posted.json()["function"]["authorizedParties"]] == ["globex"]
    assert posted.json()["function"]["versionId"] == fn["versionId"]
    got = await admin_client.get(version_path)
    assert sorted(p["ncaId"] for p in got.json()["function"]["authorizedParties"]) == ["acme", "globex"]
    added = await admin_client.patch(f"{version_path}/add", json={"authorizedParty": {"ncaId": "initech"}})
    assert added.status_code == 200
    assert (
        await admin_client.patch(f"{version_path}/remove", json={"authorizedParty": {"ncaId": "x"}})
    ).status_code == 404
    cleared = await admin_client.delete(version_path)
    assert cleared.json()["function"]["authorizedParties"] == []
    got = await admin_client.get(version_path)
    assert [p["ncaId"] for p in got.json()["function"]["authorizedParties"]] == ["acme"]


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("empty list", {"authorizedParties": []}),
    ("blank ncaId", {"authorizedParties": [{"ncaId": " "}]}),
    ("duplicate ncaId", {"authorizedParties": [{"ncaId": "a"}, {"ncaId": "a"}]}),
    ("whitespace clientId", {"authorizedParties": [{"ncaId": "a", "clientId": "  "}]}),
    (
        "client maps to two accounts",
        {"authorizedParties": [{"ncaId": "a", "clientId": "c"}, {"ncaId": "b", "clientId": "c"}]},
    ),
    ("public by an account admin", {"authorizedParties": [{"ncaId": "*"}]}),
    ("missing list", {}),
]


@pytest.mark.parametrize(("case", "body"), INVALID, ids=[c[0] for c in INVALID])
async def test_sharing_validation(make_client: Any, case: str, body: dict[str, Any]) -> None:
    account_admin = await make_client()  # every account scope, not the super-admin account_setup
    fn = await create_function(account_admin, name="v")
    response = await account_admin.post(f"{BASE}/{fn['id']}", json=body)
    assert response.status_code == 400, response.text
    if case == "public by an account admin":
        assert response.json()["detail"] == "Only NVIDIA Super Admin can make a function public"


@pytest.mark.parametrize(
    ("parties_body", "field"),
    [
        ([{"ncaId": "a"}, {"ncaId": "b"}, {"ncaId": "a"}], "authorizedParties.2.ncaId"),
        ([{"ncaId": "a", "clientId": "c"}, {"ncaId": "b", "clientId": "c"}], "authorizedParties.1.clientId"),
        ([{"ncaId": "a"}, {"ncaId": " "}], "authorizedParties.1.ncaId"),
    ],
)
async def test_a_rule_over_the_list_names_the_entry_that_breaks_it(
    admin_client: httpx.AsyncClient, parties_body: list[dict[str, str]], field: str
) -> None:
    fn = await create_function(admin_client, name="entries")
    response = await admin_client.post(f"{BASE}/{fn['id']}", json={"authorizedParties": parties_body})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_public_function_rules(make_client: Any) -> None:
    # a credential with account_setup (super admin) may make a function public; an account admin may not
    root = await make_client(None)
    super_admin = await make_client([AUTHORIZE_CLIENTS, ACCOUNT_SETUP, LIST_FUNCTIONS, "register_function"])
    fn = await create_function(super_admin, name="public-fn")
    assert (await super_admin.post(f"{BASE}/{fn['id']}", json=parties("*", "acme"))).status_code == 400
    assert (await super_admin.post(f"{BASE}/{fn['id']}", json=parties("*"))).status_code == 200
    stranger = await make_client(nca_id="anyone")
    listed = (await stranger.get("/v2/nvcf/functions", params={"visibility": "public"})).json()["functions"]
    assert [f["name"] for f in listed] == ["public-fn"]
    # an ordinary account admin of the owner account cannot touch a public function's sharing or versions
    assert (await root.delete(f"{BASE}/{fn['id']}")).status_code == 400
    assert (
        await root.post(f"/v2/nvcf/functions/{fn['id']}/versions", json=function_body())
    ).status_code == 400
    assert (await root.delete(f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}")).status_code == 400


async def test_a_public_functions_list_stays_star_only(make_client: Any) -> None:
    """nvcf-api.md 1.3: any operation on a public function is a 400, the super admin's included; only
    the super admin's DELETE takes the function private again (an fnplane way out)."""
    super_admin = await make_client([AUTHORIZE_CLIENTS, ACCOUNT_SETUP, LIST_FUNCTIONS, "register_function"])
    fn = await create_function(super_admin, name="public-only")
    function_level, version_level = f"{BASE}/{fn['id']}", f"{BASE}/{fn['id']}/versions/{fn['versionId']}"
    assert (await super_admin.post(function_level, json=parties("*"))).status_code == 200
    attempts = [
        ("POST", function_level, parties("acme"), "authorizedParties"),
        ("POST", function_level, parties("*"), "authorizedParties"),
        ("POST", version_level, parties("acme"), "authorizedParties"),
        ("PATCH", f"{function_level}/add", {"authorizedParty": {"ncaId": "acme"}}, "authorizedParty"),
        ("PATCH", f"{function_level}/remove", {"authorizedParty": {"ncaId": "*"}}, "authorizedParty"),
        ("PATCH", f"{version_level}/add", {"authorizedParty": {"ncaId": "acme"}}, "authorizedParty"),
    ]
    for method, path, body, field in attempts:
        response = await super_admin.request(method, path, json=body)
        assert response.status_code == 400, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["field"] == field, problem
        assert "'*' only" in problem["rule"], problem
    listed = (await super_admin.get(function_level)).json()["functions"]
    assert [p["authorizedParties"] for p in listed] == [[{"ncaId": "*"}]]
    # the owner account's ordinary admin cannot clear it either; the super admin can
    root = await make_client(None)
    refused = await root.delete(function_level)
    assert refused.status_code == 400 and refused.json()["field"] == "functionId", refused.text
    assert (await super_admin.delete(function_level)).status_code == 200
    stranger = await make_client(nca_id="anyone-else")
    assert (await stranger.get("/v2/nvcf/functions", params={"visibility": "public"})).json() == {
        "functions": []
    }
    assert (await super_admin.post(function_level, json=parties("acme"))).status_code == 200


async def test_sharing_needs_scope_and_ownership(admin_client: httpx.AsyncClient, make_client: Any) -> None:
    fn = await create_function(admin_client, name="owned")
    no_scope = await make_client([LIST_FUNCTIONS])
    assert (await no_scope.post(f"{BASE}/{fn['id']}", json=parties("acme"))).status_code == 403
    other = await make_client(nca_id="acme")
    assert (await other.post(f"{BASE}/{fn['id']}", json=parties("globex"))).status_code == 404
    assert (await other.get(f"{BASE}/{fn['id']}")).status_code == 404
    # naming its own account: still 404, not 400 "the owning account cannot be an authorized party"
    assert (await other.post(f"{BASE}/{fn['id']}", json=parties("acme"))).status_code == 404
    add_self = {"authorizedParty": {"ncaId": "acme"}}
    assert (await other.patch(f"{BASE}/{fn['id']}/add", json=add_self)).status_code == 404
    unknown = f"{BASE}/00000000-0000-4000-8000-000000000000"
    assert (await other.post(unknown, json=parties("acme"))).status_code == 404
    assert (await admin_client.post(f"{BASE}/{fn['id']}", json=parties("nvcf-default"))).status_code == 400


async def test_shared_account_can_list_and_invoke(
    admin_client: httpx.AsyncClient, make_client: Any, control_app: Any
) -> None:
    fn = await create_function(admin_client, name="invocable")
    v2 = (
        await admin_client.post(f"/v2/nvcf/functions/{fn['id']}/versions", json=function_body("invocable"))
    ).json()["function"]
    guest = await make_client(nca_id="guest")
    authority = control_app.components.access_authority
    with pytest.raises(NotFoundError):
        await authority.grant(guest.credential, INVOKE_FUNCTION, fn["id"])
    # share only the second version
    await admin_client.post(f"{BASE}/{fn['id']}/versions/{v2['versionId']}", json=parties("guest"))
    listed = (await guest.get("/v2/nvcf/functions")).json()["functions"]
    assert [(f["versionId"], f["ownedByDifferentAccount"]) for f in listed] == [(v2["versionId"], True)]
    grant = await authority.grant(guest.credential, INVOKE_FUNCTION, fn["id"])
    assert grant.nca_id == "guest"
    assert [v.version_id for v in grant.versions] == [v2["versionId"]]
    assert grant.versions[0].status == "INACTIVE" and grant.versions[0].owner_nca_id == "nvcf-default"
    with pytest.raises(NotFoundError):
        await authority.grant(guest.credential, INVOKE_FUNCTION, fn["id"], fn["versionId"])
    # function-level sharing opens every version
    await admin_client.post(f"{BASE}/{fn['id']}", json=parties("guest"))
    await asyncio.sleep(
        control_app.components.settings.access_versions_cache_ttl_s + 0.1
    )  # past the versions cache
    grant = await authority.grant(guest.credential, INVOKE_FUNCTION, fn["id"])
    assert {v.version_id for v in grant.versions} == {fn["versionId"], v2["versionId"]}


async def test_access_authority_errors_and_http_form(
    admin_client: httpx.AsyncClient, make_client: Any, control_app: Any, http: httpx.AsyncClient
) -> None:
    fn = await create_function(admin_client, name="guarded")
    other = await create_function(admin_client, name="other")
    authority = control_app.components.access_authority
    with pytest.raises(UnauthorizedError):
        await authority.grant("nvapi-not-a-key", INVOKE_FUNCTION)
    lister = await make_client([LIST_FUNCTIONS])
    with pytest.raises(ForbiddenError):
        await authority.grant(lister.credential, INVOKE_FUNCTION, fn["id"])
    narrow = await make_client([INVOKE_FUNCTION], resources=[{"type": "function", "id": f"{fn['id']}/*"}])
    assert (await authority.grant(narrow.credential, INVOKE_FUNCTION, fn["id"])).versions[
        0
    ].function_name == "guarded"
    with pytest.raises(ForbiddenError):
        await authority.grant(narrow.credential, INVOKE_FUNCTION, other["id"])
    with pytest.raises(NotFoundError):
        await authority.grant(narrow.credential, INVOKE_FUNCTION, "00000000-0000-0000-0000-000000000000")
    # the same over HTTP
    ok = await narrow.post("/v1/fnplane/access", json={"scope": INVOKE_FUNCTION, "functionId": fn["id"]})
    assert ok.status_code == 200
    body = ok.json()
    assert body["ncaId"] == "nvcf-default" and body["functionId"] == fn["id"]
    assert body["versions"][0]["functionVersionId"] == fn["versionId"]
    assert body["versions"][0]["inferenceUrl"] == "/echo"
    assert (
        await narrow.post("/v1/fnplane/access", json={"scope": INVOKE_FUNCTION, "functionId": other["id"]})
    ).status_code == 403
    assert (await lister.post("/v1/fnplane/access", json={"scope": INVOKE_FUNCTION})).status_code == 403
    assert (await http.post("/v1/fnplane/access", json={"scope": INVOKE_FUNCTION})).status_code == 401
