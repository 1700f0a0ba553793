"""Everything authentication needs, built once per app from the engine and the settings.

`control.components.create_components` builds it as `ControlComponents.auth`; its authenticator is
what `dependencies.authenticate` and the AccessAuthority use. `bootstrap` builds one of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnplane.control.auth.accounts import AccountService
from fnplane.control.auth.api_keys import ApiKeyService
from fnplane.control.auth.authenticator import DatabaseAuthenticator
from fnplane.control.auth.revocation import PublishRevoked, Revoker
from fnplane.control.auth.service_accounts import ServiceAccountService
from fnplane.control.auth.signing import TokenSigner
from fnplane.control.db.repositories.accounts import AccountRepository
from fnplane.control.db.repositories.api_keys import ApiKeyRepository
from fnplane.control.db.repositories.clients import ClientRepository
from fnplane.control.db.repositories.signing_keys import SigningKeyRepository
from fnplane.control.db.repositories.transactions import Engine
from fnplane.control.settings import ControlSettings


@dataclass(frozen=True)
class AuthComponents:
    accounts: AccountRepository
    signer: TokenSigner
    authenticator: DatabaseAuthenticator
    revoker: Revoker
    api_keys: ApiKeyService
    service_accounts: ServiceAccountService
    account_service: AccountService


def create_auth(
    engine: Engine, settings: ControlSettings, publish_revoked: PublishRevoked | None = None
) -> AuthComponents:
    """`publish_revoked` broadcasts revocations to the gateways (auth/revocation.py); None: this
    process forgets them at once, others within `auth_cache_ttl_s`."""
    secret = settings.require_key_hash_secret()
    signer = TokenSigner(
        SigningKeyRepository(engine),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        key_hash_secret=secret,
    )
    clients = ClientRepository(engine)
    keys = ApiKeyRepository(engine)
    authenticator = DatabaseAuthenticator(
        keys, clients, signer, key_hash_secret=secret, cache_ttl_s=settings.auth_cache_ttl_s
    )
    revoker = Revoker(authenticator, publish_revoked)
    api_keys = ApiKeyService(
        keys,
        revoker,
        key_hash_secret=secret,
        max_keys_per_owner=settings.max_api_keys_per_owner,
        max_ttl_days=settings.max_api_key_ttl_days,
        max_authz_size_chars=settings.max_authz_size_chars,
    )
    service_accounts = ServiceAccountService(
        clients,
        signer,
        revoker,
        key_hash_secret=secret,
        token_ttl_s=settings.jwt_ttl_s,
    )
    accounts = AccountRepository(engine)
    account_service = AccountService(
        accounts, clients, revoker, default_max_functions=settings.default_max_functions
    )
    return AuthComponents(
        accounts, signer, authenticator, revoker, api_keys, service_accounts, account_service
    )
