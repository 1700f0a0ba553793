"""Who may see which function version (nvcf-api.md 1.1, 1.3, 5.4).

Two filters, applied in this order so that 404 and 403 mean what NVCF says:

1. account visibility: the caller's account owns the version, or the version is shared with that
   account (function- or version-level list) or with everyone (`*`) -> otherwise 404;
2. API-key resources (`Principal.may_access_function`): what survived step 1 but is not covered by
   the key's resources -> 403 when nothing is left ("something existed before filtering").
"""

from __future__ import annotations

from dataclasses import dataclass

from fnplane.control.auth.principal import Principal
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories import functions as functions_repo
from fnplane.control.db.repositories.functions import VersionRecord
from fnplane.control.db.repositories.transactions import Connection
from fnplane.shared.errors import ForbiddenError, NotFoundError


@dataclass(frozen=True)
class SeenVersion:
    record: VersionRecord
    owned: bool
    # shared with everyone ('*') on the function or version level
    public: bool


def function_not_found(function_id: str) -> NotFoundError:
    return NotFoundError(f"Function '{function_id}' not found")


def version_not_found(function_id: str, version_id: str) -> NotFoundError:
    return NotFoundError(f"Function '{function_id}' version '{version_id}' not found")


def forbidden(function_id: str) -> ForbiddenError:
    return ForbiddenError(f"The credential's resources do not cover function '{function_id}'")


async def account_sees(conn: Connection, principal: Principal, record: VersionRecord) -> SeenVersion | None:
    owned = record.nca_id == principal.nca_id
    matches = await parties_repo.shared_with(conn, record.function_id, record.version_id, principal.nca_id)
    if owned or matches:
        return SeenVersion(record, owned, "*" in matches)
    return None


async def visible_versions(conn: Connection, principal: Principal, function_id: str) -> list[SeenVersion]:
    """Every version of the function the caller may see; 404 if none, 403 if only the key filters them."""
    seen = [
        s
        for record in await functions_repo.versions_of(conn, function_id)
        if (s := await account_sees(conn, principal, record)) is not None
    ]
    if not seen:
        raise function_not_found(function_id)
    allowed = [
        s for s in seen if principal.may_access_function(function_id, s.record.version_id, owned=s.owned)
    ]
    if not allowed:
        raise forbidden(function_id)
    return allowed


async def visible_version(
    conn: Connection, principal: Principal, function_id: str, version_id: str
) -> SeenVersion:
    record = await functions_repo.get_version(conn, version_id)
    if record is None or record.function_id != function_id:
        raise version_not_found(function_id, version_id)
    seen = await account_sees(conn, principal, record)
    if seen is None:
        raise version_not_found(function_id, version_id)
    if not principal.may_access_function(function_id, version_id, owned=seen.owned):
        raise forbidden(function_id)
    return seen


async def owned_version(
    conn: Connection, principal: Principal, function_id: str, version_id: str
) -> SeenVersion:
    """A version the caller's account owns (management operations); shared ones are 404."""
    seen = await visible_version(conn, principal, function_id, version_id)
    if not seen.owned:
        raise version_not_found(function_id, version_id)
    return seen


async def owned_function(conn: Connection, principal: Principal, function_id: str) -> list[VersionRecord]:
    """The versions of a function the caller's account owns; 404 otherwise, 403 if the key lacks it."""
    owner = await functions_repo.function_owner(conn, function_id)
    if owner is None or owner != principal.nca_id:
        raise function_not_found(function_id)
    if not principal.may_access_function(function_id, None, owned=True):
        raise forbidden(function_id)
    return await functions_repo.versions_of(conn, function_id)
