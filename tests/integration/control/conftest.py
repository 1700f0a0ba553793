"""Fixtures for control-plane integration tests (each test runs on SQLite and on PostgreSQL).

* `control_settings` — the ControlSettings of the app (database from the `database_url` fixture).
* `control_engine` — the migrated AsyncEngine (disposed after the test).
* `control_app` — the ControlApp from `create_app(control_settings, control_engine)`, bootstrap run
  (default account `nvcf-default`, signing key, admin key); `control_app.components` is what it is made of.
* `admin_key` — the bootstrap admin API key (ADMIN_SCOPES, account-functions/* + authorized-functions/*).
* `http` — an httpx.AsyncClient on the app (ASGI transport, base_url http://testserver), no credentials.
* `admin_client` — like `http`, with `Authorization: Bearer <admin_key>`.
* `make_client` — async factory:
      await make_client(scopes=None, *, nca_id="nvcf-default", resources=None, kind="api_key",
                        expires_in_s=None)
  returns an httpx.AsyncClient whose Authorization carries a fresh credential of account `nca_id`
  (created if missing): an API key (kind="api_key"; resources default account-functions/* and
  authorized-functions/*) or a JWT of a fresh service account (kind="jwt"). `scopes` defaults to
  ACCOUNT_SCOPES; `[]` gives a valid credential with no scope. `expires_in_s` sets the credential's
  lifetime (negative: already expired). The client's `.credential` attribute holds the bearer string.
* `auth` — the app's AuthComponents (services behind the routes), for setup without HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable
from datetime import timedelta
from typing import Any, Protocol

import httpx
import pytest

from fnplane.control.app import ControlApp, create_app
from fnplane.control.auth.api_keys import authorizations_for
from fnplane.control.auth.bootstrap import bootstrap
from fnplane.control.auth.components import AuthComponents
from fnplane.control.db.engine import open_database
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.settings import ControlSettings
from fnplane.shared.scopes import ACCOUNT_SCOPES


class MakeClient(Protocol):
    def __call__(
        self,
        scopes: Iterable[str] | None = None,
        *,
        nca_id: str = "nvcf-default",
        resources: list[dict[str, str]] | None = None,
        kind: str = "api_key",
        expires_in_s: float | None = None,
    ) -> Awaitable[CredentialClient]: ...


@pytest.fixture
def control_settings(database_url: str) -> ControlSettings:
    return ControlSettings(database_url=database_url, key_hash_secret="test-key-hash-secret")


@pytest.fixture
async def control_engine(control_settings: ControlSettings) -> AsyncIterator[Any]:
    engine = await open_database(control_settings.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def admin_key(control_engine: Any, control_settings: ControlSettings) -> str:
    key = await bootstrap(control_engine, control_settings, None)
    assert key is not None
    return key


@pytest.fixture
async def control_app(control_engine: Any, control_settings: ControlSettings, admin_key: str) -> ControlApp:
    return create_app(control_settings, control_engine)


@pytest.fixture
def auth(control_app: ControlApp) -> AuthComponents:
    return control_app.components.auth


class CredentialClient(httpx.AsyncClient):
    """An httpx client on the app; `credential` is the bearer string it sends (None: no header)."""

    def __init__(self, app: Any, bearer: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        super().__init__(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
        )
        self.credential = bearer


def _client(app: Any, bearer: str | None = None) -> CredentialClient:
    return CredentialClient(app, bearer)


@pytest.fixture
async def http(control_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(control_app) as client:
        yield client


@pytest.fixture
async def admin_client(control_app: Any, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(control_app, admin_key) as client:
        yield client


@pytest.fixture
async def make_client(control_app: Any, control_settings: ControlSettings) -> AsyncIterator[MakeClient]:
    components = control_app.components.auth
    clients: list[CredentialClient] = []
    counter = 0

    async def factory(
        scopes: Iterable[str] | None = None,
        *,
        nca_id: str = "nvcf-default",
        resources: list[dict[str, str]] | None = None,
        kind: str = "api_key",
        expires_in_s: float | None = None,
    ) -> CredentialClient:
        nonlocal counter
        counter += 1
        scope_set = set(ACCOUNT_SCOPES if scopes is None else scopes)
        await components.accounts.ensure(nca_id, nca_id, control_settings.default_max_functions)
        if kind == "api_key":
            expires_at = now_utc() + timedelta(seconds=expires_in_s if expires_in_s is not None else 3600)
            _, bearer = await components.api_keys.issue(
                nca_id,
                f"test-owner-{counter}",
                authorizations_for(scope_set, resources),
                description=f"test key {counter}",
                expires_at=expires_at,
            )
        elif kind == "jwt":
            record, _ = await components.service_accounts.register(nca_id, scope_set or ACCOUNT_SCOPES)
            ttl = int(expires_in_s) if expires_in_s is not None else control_settings.jwt_ttl_s
            minted = await components.signer.mint(record, scope_set, ttl)
            bearer = minted.token
        else:
            raise ValueError(f"unknown credential kind {kind!r}")
        client = _client(control_app, bearer)
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await client.aclose()
