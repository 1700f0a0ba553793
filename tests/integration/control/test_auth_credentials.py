"""The authenticator: API keys and JWTs resolved to principals, and every way a credential fails."""

from __future__ import annotations

from typing import Any

import pytest

from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.auth.components import AuthComponents
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.clients import ClientRecord
from fnplane.control.settings import ControlSettings
from fnplane.shared.errors import NotFoundError, UnauthorizedError
from fnplane.shared.scopes import (
    ACCOUNT_SCOPES,
    ADMIN_SCOPES,
    DEFAULT_ACCOUNT,
    INVOKE_FUNCTION,
    LIST_FUNCTIONS,
    MANAGE_KEYS,
)


async def test_admin_key_resolves_to_admin_scopes(auth: AuthComponents, admin_key: str) -> None:
    principal = await auth.authenticator.authenticate(admin_key)
    assert principal.nca_id == DEFAULT_ACCOUNT
    assert principal.kind == "api_key"
    assert principal.scopes == ADMIN_SCOPES
    assert {g.type for g in principal.resources or ()} == {"account-functions", "authorized-functions"}


async def test_bootstrap_is_idempotent_and_registers_a_given_key(
    control_engine: Any, control_settings: ControlSettings, admin_key: str, auth: AuthComponents
) -> None:
    assert await bootstrap(control_engine, control_settings, None) is None
    chosen = "nvapi-operator-chosen-admin-key"
    assert await bootstrap(control_engine, control_settings, chosen) == chosen
    assert await bootstrap(control_engine, control_settings, chosen) is None
    principal = await auth.authenticator.authenticate(chosen)
    assert principal.scopes == ADMIN_SCOPES


async def test_unknown_and_expired_keys_are_unauthorized(auth: AuthComponents, make_client: Any) -> None:
    with pytest.raises(UnauthorizedError):
        await auth.authenticator.authenticate("nvapi-" + "A" * 43)
    expired = await make_client([LIST_FUNCTIONS], expires_in_s=-1)
    with pytest.raises(UnauthorizedError, match="EXPIRED"):
        await auth.authenticator.authenticate(expired.credential)


async def test_jwt_resolves_through_the_clients_table(auth: AuthComponents, make_client: Any) -> None:
    client = await make_client([INVOKE_FUNCTION, LIST_FUNCTIONS], nca_id="team-a", kind="jwt")
    principal = await auth.authenticator.authenticate(client.credential)
    assert principal.nca_id == "team-a"
    assert principal.kind == "jwt"
    assert principal.resources is None
    assert principal.scopes == {INVOKE_FUNCTION, LIST_FUNCTIONS}


async def test_jwt_of_unknown_subject_is_not_found(auth: AuthComponents) -> None:
    never_stored = ClientRecord("nobody", "team-a", "nobody", None, sorted(ACCOUNT_SCOPES), now_utc(), None)
    minted = await auth.signer.mint(never_stored, ACCOUNT_SCOPES, 60)
    with pytest.raises(NotFoundError):
        await auth.authenticator.authenticate(minted.token)


@pytest.mark.parametrize("bearer", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.abc"])
async def test_malformed_tokens_are_unauthorized(auth: AuthComponents, bearer: str) -> None:
    with pytest.raises(UnauthorizedError):
        await auth.authenticator.authenticate(bearer)


async def test_expired_jwt_is_unauthorized(auth: AuthComponents, make_client: Any) -> None:
    client = await make_client(kind="jwt", expires_in_s=-30)
    with pytest.raises(UnauthorizedError, match="expired"):
        await auth.authenticator.authenticate(client.credential)


async def test_revocation_invalidates_the_cache(auth: AuthComponents, make_client: Any) -> None:
    client = await make_client([LIST_FUNCTIONS])
    principal = await auth.authenticator.authenticate(client.credential)  # now cached
    key_id = principal.extra["key_id"]
    from fnplane.control.auth.principal import Principal

    owner = Principal(
        nca_id=DEFAULT_ACCOUNT, subject="x", kind="jwt", scopes=frozenset({LIST_FUNCTIONS, MANAGE_KEYS})
    )
    await auth.api_keys.delete(owner, key_id)
    with pytest.raises(UnauthorizedError):
        await auth.authenticator.authenticate(client.credential)
