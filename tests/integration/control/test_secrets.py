"""Function secrets: sealed at rest, opened only for the agent, PUT /v2/nvcf/secrets/... (nvcf-api.md 1.7).

On SQLite and PostgreSQL. The "agent" is the test calling the real agent API (functions_helpers).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from functions_helpers import assignments, create_function, deploy, register_cluster, spec

from fnplane.control.app import create_app
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.settings import ControlSettings, MissingKeyHashSecretError
from fnplane.shared.scopes import ACCOUNT_SCOPES, LIST_FUNCTIONS_DETAILS, UPDATE_SECRETS

PLAINTEXT = "s3cr3t-value-that-must-not-be-stored"


def _secrets_path(fn: dict[str, Any]) -> str:
    return f"/v2/nvcf/secrets/functions/{fn['id']}/versions/{fn['versionId']}"


def _version_path(fn: dict[str, Any]) -> str:
    return f"/v2/nvcf/functions/{fn['id']}/versions/{fn['versionId']}"


async def _stored(engine: Any, version_id: str) -> list[dict[str, str]]:
    async with engine.connect() as conn:
        record = await functions_repo.get_version(conn, version_id)
    assert record is not None
    return record.secrets or []


async def _environment(client: httpx.AsyncClient, fn: dict[str, Any]) -> dict[str, str]:
    """The containerEnvironment the agent is given for the version's (first) instance."""
    instance = next(i for i in await assignments(client) if i["functionVersionId"] == fn["versionId"])
    environment: dict[str, str] = instance["containerEnvironment"]
    return environment


async def _secret_names(client: httpx.AsyncClient, fn: dict[str, Any]) -> list[str]:
    response = await client.get(_version_path(fn))
    assert response.status_code == 200, response.text
    return sorted(response.json()["function"].get("secrets", []))


async def test_secret_values_are_sealed_at_rest_and_opened_for_the_agent(
    admin_client: httpx.AsyncClient, control_engine: Any
) -> None:
    await register_cluster(admin_client)
    fn = await create_function(
        admin_client,
        name="sealed",
        containerEnvironment=[{"key": "MODE", "value": "fast"}],
        secrets=[{"name": "API_TOKEN", "value": PLAINTEXT}, {"name": "cfg.json", "value": {"k": "v"}}],
    )
    stored = await _stored(control_engine, fn["versionId"])
    assert [entry["name"] for entry in stored] == ["API_TOKEN", "cfg.json"]
    raw = json.dumps(stored)
    assert PLAINTEXT not in raw and '"k"' not in raw
    # an object value is sealed as its JSON text and marked so (the secrets file gives the object back)
    assert [set(entry) for entry in stored] == [{"name", "sealed"}, {"name", "sealed", "json"}]
    # every seal is fresh: the same value twice gives two different stored strings
    twin = await create_function(
        admin_client, name="twin", secrets=[{"name": "API_TOKEN", "value": PLAINTEXT}]
    )
    assert (await _stored(control_engine, twin["versionId"]))[0]["sealed"] != stored[0]["sealed"]

    detail = await admin_client.get(_version_path(fn))
    assert detail.json()["function"]["secrets"] == ["API_TOKEN", "cfg.json"]
    assert PLAINTEXT not in detail.text

    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    environment = await _environment(admin_client, fn)
    assert environment == {"MODE": "fast", "API_TOKEN": PLAINTEXT, "cfg.json": '{"k": "v"}'}
    # and as the function's /var/secrets/secrets.json holds them: values as they were given
    [instance] = [i for i in await assignments(admin_client) if i["functionVersionId"] == fn["versionId"]]
    assert instance["secrets"] == {"API_TOKEN": PLAINTEXT, "cfg.json": {"k": "v"}}


async def test_a_sealed_value_moved_to_another_version_or_name_does_not_open(
    admin_client: httpx.AsyncClient, control_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await register_cluster(admin_client)
    victim = await create_function(
        admin_client, name="victim", secrets=[{"name": "TOKEN", "value": PLAINTEXT}]
    )
    thief = await create_function(admin_client, name="thief", secrets=[{"name": "OWN", "value": "mine"}])
    sealed = (await _stored(control_engine, victim["versionId"]))[0]["sealed"]
    async with control_engine.begin() as conn:
        # someone who can write the table copies the victim's sealed value into their own version,
        # once under the same name and once renamed, next to a plaintext entry
        await functions_repo.update_version(
            conn,
            thief["versionId"],
            secrets=[
                *(await _stored(control_engine, thief["versionId"])),
                {"name": "TOKEN", "sealed": sealed},
                {"name": "RENAMED", "sealed": sealed},
                {"name": "PLAIN", "value": "not sealed"},
            ],
        )
    assert (await deploy(admin_client, thief, spec(1, 1))).status_code == 200
    assert await _environment(admin_client, thief) == {"OWN": "mine"}
    assert "left out of the instance environment" in caplog.text


async def test_another_key_hash_secret_cannot_open_the_secrets(
    admin_client: httpx.AsyncClient, control_engine: Any, control_settings: ControlSettings
) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client, name="foreign", secrets=[{"name": "TOKEN", "value": PLAINTEXT}])
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    assert (await _environment(admin_client, fn))["TOKEN"] == PLAINTEXT
    # the same database under another secret (the admin key's hash depends on the secret too, so that
    # app's box is asked directly): the value does not open
    other = create_app(control_settings.model_copy(update={"key_hash_secret": "another"}), control_engine)
    stored = await _stored(control_engine, fn["versionId"])
    assert other.components.secret_box.open_all(fn["versionId"], stored) == {}


async def test_put_secrets_merges_by_name_and_the_new_value_wins(
    admin_client: httpx.AsyncClient, control_engine: Any
) -> None:
    await register_cluster(admin_client)
    fn = await create_function(
        admin_client,
        name="merge",
        secrets=[{"name": "A", "value": "a1-value"}, {"name": "B", "value": "b1-value"}],
    )
    response = await admin_client.put(
        _secrets_path(fn),
        json={"secrets": [{"name": "B", "value": "b2-value"}, {"name": "C", "value": {"x": 1}}]},
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await _secret_names(admin_client, fn) == ["A", "B", "C"]
    raw = json.dumps(await _stored(control_engine, fn["versionId"]))
    # '-' is not in the base64 alphabet, so a plain value cannot show up in a sealed one by chance
    assert "b2-value" not in raw and "a1-value" not in raw
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    environment = await _environment(admin_client, fn)
    assert {k: environment[k] for k in "ABC"} == {"A": "a1-value", "B": "b2-value", "C": '{"x": 1}'}


async def test_put_secrets_on_a_version_without_secrets_only_while_inactive(
    admin_client: httpx.AsyncClient,
) -> None:
    await register_cluster(admin_client)
    inactive = await create_function(admin_client, name="bare")
    response = await admin_client.put(
        _secrets_path(inactive), json={"secrets": [{"name": "N", "value": "v"}]}
    )
    assert response.status_code == 204, response.text
    assert await _secret_names(admin_client, inactive) == ["N"]

    deployed = await create_function(admin_client, name="bare-deployed")
    assert (await deploy(admin_client, deployed, spec(1, 1))).status_code == 200
    response = await admin_client.put(
        _secrets_path(deployed), json={"secrets": [{"name": "N", "value": "v"}]}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "INACTIVE" in response.json()["detail"]
    assert await _secret_names(admin_client, deployed) == []

    # a deployed version that already has secrets may change them and get more
    with_secrets = await create_function(admin_client, name="kept", secrets=[{"name": "N", "value": "v"}])
    assert (await deploy(admin_client, with_secrets, spec(1, 1))).status_code == 200
    response = await admin_client.put(
        _secrets_path(with_secrets),
        json={"secrets": [{"name": "N", "value": "w"}, {"name": "M", "value": "m"}]},
    )
    assert response.status_code == 204, response.text
    assert await _secret_names(admin_client, with_secrets) == ["M", "N"]


INVALID_SECRETS: list[tuple[str, Any, str]] = [
    ("empty list", {"secrets": []}, "secrets"),
    ("no secrets field", {}, "secrets"),
    ("secrets not a list", {"secrets": {"name": "A", "value": "1"}}, "secrets"),
    ("duplicate names", {"secrets": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "secrets"),
    ("name regex", {"secrets": [{"name": "-x", "value": "1"}]}, "secrets.0.name"),
    ("name with space", {"secrets": [{"name": "a b", "value": "1"}]}, "secrets.0.name"),
    ("name empty", {"secrets": [{"name": "", "value": "1"}]}, "secrets.0.name"),
    ("name too long", {"secrets": [{"name": "a" * 49, "value": "1"}]}, "secrets.0.name"),
    ("name missing", {"secrets": [{"value": "1"}]}, "secrets.0.name"),
    ("value missing", {"secrets": [{"name": "A"}]}, "secrets.0.value"),
    ("value blank", {"secrets": [{"name": "A", "value": "   "}]}, "secrets.0.value"),
    ("value too long", {"secrets": [{"name": "A", "value": "v" * 32769}]}, "secrets.0.value"),
    ("value a number", {"secrets": [{"name": "A", "value": 5}]}, "secrets.0.value"),
]


@pytest.mark.parametrize(("label", "body", "field"), INVALID_SECRETS, ids=[c[0] for c in INVALID_SECRETS])
async def test_put_secrets_rejects_invalid_bodies(
    admin_client: httpx.AsyncClient, label: str, body: Any, field: str
) -> None:
    fn = await create_function(admin_client, name="strict", secrets=[{"name": "KEEP", "value": "k"}])
    response = await admin_client.put(_secrets_path(fn), json=body)
    assert response.status_code == 400, (label, response.text)
    problem = response.json()
    assert problem["field"] == field, (label, problem)
    assert await _secret_names(admin_client, fn) == ["KEEP"]


async def test_put_secrets_accepts_the_limits(admin_client: httpx.AsyncClient) -> None:
    await register_cluster(admin_client)
    fn = await create_function(admin_client, name="limits")
    longest_name = "a" * 48
    body = {
        "secrets": [
            {"name": longest_name, "value": "v" * 32768},
            {"name": "x.y-z_1", "value": " padded "},
            {"name": "9", "value": {"nested": ["ok"]}},
        ]
    }
    response = await admin_client.put(_secrets_path(fn), json=body)
    assert response.status_code == 204, response.text
    assert await _secret_names(admin_client, fn) == sorted([longest_name, "x.y-z_1", "9"])
    assert (await deploy(admin_client, fn, spec(1, 1))).status_code == 200
    environment = await _environment(admin_client, fn)
    assert environment[longest_name] == "v" * 32768
    assert environment["x.y-z_1"] == " padded "  # stored as given; only the length rule trims


async def test_put_secrets_scope_ownership_and_unknown_versions(
    admin_client: httpx.AsyncClient, http: httpx.AsyncClient, make_client: Any
) -> None:
    fn = await create_function(admin_client, name="guarded", secrets=[{"name": "S", "value": "v"}])
    body = {"secrets": [{"name": "S", "value": "changed"}]}
    without = await make_client(ACCOUNT_SCOPES - {UPDATE_SECRETS})
    response = await without.put(_secrets_path(fn), json=body)
    assert response.status_code == 403, response.text
    assert (await http.put(_secrets_path(fn), json=body)).status_code == 401
    only = await make_client([UPDATE_SECRETS])
    assert (await only.put(_secrets_path(fn), json=body)).status_code == 204
    # another account, even with the scope, does not see the version
    stranger = await make_client([UPDATE_SECRETS, LIST_FUNCTIONS_DETAILS], nca_id="stranger")
    assert (await stranger.put(_secrets_path(fn), json=body)).status_code == 404
    unknown = {**fn, "versionId": "00000000-0000-4000-8000-000000000000"}
    assert (await admin_client.put(_secrets_path(unknown), json=body)).status_code == 404
    other = await create_function(admin_client, name="other")
    mixed = {**fn, "id": other["id"]}
    assert (await admin_client.put(_secrets_path(mixed), json=body)).status_code == 404


@pytest.mark.parametrize("secret", [None, "", "   ", "change-me"])
def test_create_app_refuses_a_missing_or_public_key_hash_secret(sqlite_url: str, secret: str | None) -> None:
    settings = ControlSettings(database_url=sqlite_url, key_hash_secret=secret)
    with pytest.raises(MissingKeyHashSecretError, match="FNPLANE_CONTROL_KEY_HASH_SECRET"):
        create_app(settings, engine=None)  # type: ignore[arg-type]  # refused before the engine is used


def test_key_hash_secret_has_no_default_and_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FNPLANE_CONTROL_KEY_HASH_SECRET", raising=False)
    assert ControlSettings().key_hash_secret is None
    monkeypatch.setenv("FNPLANE_CONTROL_KEY_HASH_SECRET", "from-the-environment")
    assert ControlSettings().require_key_hash_secret() == "from-the-environment"
