"""First start: the default account, the admin API key and a JWT signing key.

`fnplane up` calls `bootstrap()` before serving; it is idempotent, so every start may call it.
"""

from __future__ import annotations

from datetime import timedelta

from fnplane.control.auth.api_keys import authorizations_for
from fnplane.control.auth.components import create_auth
from fnplane.control.auth.credentials import is_api_key
from fnplane.control.auth.revocation import PublishRevoked
from fnplane.control.db.repositories._time import now_utc
from fnplane.control.db.repositories.transactions import Engine
from fnplane.control.settings import ControlSettings
from fnplane.shared.errors import BadRequestError
from fnplane.shared.scopes import ADMIN_SCOPES, DEFAULT_ACCOUNT

ADMIN_OWNER = "admin"
# the admin key is the operator's root credential: it should not silently lapse after a year
_ADMIN_KEY_TTL = timedelta(days=365 * 100)


async def bootstrap(
    engine: Engine,
    settings: ControlSettings,
    admin_key: str | None,
    *,
    replaces: str | None = None,
    publish_revoked: PublishRevoked | None = None,
) -> str | None:
    """Create what a fresh installation needs; return a newly created admin key, else None.

    With `admin_key` (an `nvapi-` string, e.g. from FNPLANE_ADMIN_KEY) exactly that value is
    registered (once); without it a key is generated on the first start only. `replaces` is the
    admin key registered before (`DIR/admin-key`): when it differs from `admin_key` it is deleted and
    the revocation broadcast (`publish_revoked`), so a replaced admin key stops working at once.
    """
    if admin_key is not None and not is_api_key(admin_key):
        raise BadRequestError(
            "the admin key must start with nvapi-", field="FNPLANE_ADMIN_KEY", rule="nvapi- prefix"
        )
    auth = create_auth(engine, settings, publish_revoked)
    await auth.accounts.ensure(DEFAULT_ACCOUNT, DEFAULT_ACCOUNT, settings.default_max_functions)
    await auth.signer.ensure_key()
    if admin_key is not None:
        if replaces is not None and replaces != admin_key:
            await auth.api_keys.revoke_value(replaces)
        if await auth.api_keys.exists(admin_key):
            return None
    elif await auth.api_keys.count_for_owner(DEFAULT_ACCOUNT, ADMIN_OWNER) > 0:
        return None
    _, value = await auth.api_keys.issue(
        DEFAULT_ACCOUNT,
        ADMIN_OWNER,
        authorizations_for(ADMIN_SCOPES),
        description="fnplane admin key",
        expires_at=now_utc() + _ADMIN_KEY_TTL,
        value=admin_key,
    )
    return value
