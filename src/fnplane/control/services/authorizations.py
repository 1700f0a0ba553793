"""Sharing a function or a version with other accounts (nvcf-api.md 1.3).

A function-level list applies to every version; a version-level list adds to it for that version.
Only the owning account manages the lists. `ncaId: "*"` (public) is for the super admin
(`account_setup`) only, as the single entry and without `clientId`. A public function's list stays
`*` only: replacing it, adding or removing a party is a 400 for everyone; only the super admin may clear
it (DELETE), which makes the function private again.
"""

from __future__ import annotations

from fnplane.control.auth.principal import Principal
from fnplane.control.auth.revocation import Revoker
from fnplane.control.db.repositories import authorizations as parties_repo
from fnplane.control.db.repositories.authorizations import Party
from fnplane.control.db.repositories.transactions import Connection, Database
from fnplane.control.services.visibility import owned_function, owned_version
from fnplane.shared import revocations
from fnplane.shared.errors import BadRequestError, ConflictError, NotFoundError
from fnplane.shared.models.deployments import AuthorizedPartiesDto, AuthorizedPartyDto
from fnplane.shared.scopes import ACCOUNT_SETUP

PUBLIC = "*"
PUBLIC_RULE = "a public function's authorized parties stay '*' only: none is added, removed or replaced"


def _is_super_admin(principal: Principal) -> bool:
    return principal.has_any_scope(ACCOUNT_SETUP)


async def _stored(
    conn: Connection, principal: Principal, function_id: str, version_id: str | None
) -> AuthorizedPartiesDto:
    """The parties as stored now, inside the caller's transaction."""
    return _dto(
        function_id, principal.nca_id, version_id, await parties_repo.parties(conn, function_id, version_id)
    )


def _dto(function_id: str, owner: str, version_id: str | None, parties: list[Party]) -> AuthorizedPartiesDto:
    seen: dict[str, AuthorizedPartyDto] = {}
    for party in parties:
        seen.setdefault(party.nca_id, AuthorizedPartyDto(nca_id=party.nca_id, client_id=party.client_id))
    return AuthorizedPartiesDto(
        id=function_id, nca_id=owner, version_id=version_id, authorized_parties=list(seen.values())
    )


async def _owned(conn: Connection, principal: Principal, function_id: str, version_id: str | None) -> None:
    """The function (or the version, if given) is owned by the caller (404) and covered by the key (403)."""
    if version_id is None:
        await owned_function(conn, principal, function_id)
    else:
        await owned_version(conn, principal, function_id, version_id)


async def _manageable(
    conn: Connection,
    principal: Principal,
    function_id: str,
    version_id: str | None,
    *,
    field: str,
    clearing: bool = False,
) -> None:
    """Owned by the caller (404), covered by the key (403), and not public (400 naming `field`, the
    operation's); a super admin may clear a public function's list."""
    await _owned(conn, principal, function_id, version_id)
    if not await parties_repo.is_public(conn, function_id):
        return
    if clearing and _is_super_admin(principal):
        return
    raise BadRequestError(
        f"Validation failed: field '{field}': function '{function_id}' is public; its authorized "
        "parties stay '*' only",
        field=field,
        rule=PUBLIC_RULE,
    )


def _check_parties(principal: Principal, parties: list[AuthorizedPartyDto]) -> None:
    if any(p.nca_id == principal.nca_id for p in parties):
        raise BadRequestError(
            "Validation failed: field 'authorizedParties': the owning account cannot be an authorized party",
            field="authorizedParties",
            rule="the owning account cannot be an authorized party",
        )
    if any(p.nca_id == PUBLIC for p in parties):
        if not _is_super_admin(principal):
            raise BadRequestError(
                "Only NVIDIA Super Admin can make a function public",
                field="authorizedParties",
                rule="'*' (public) is for the NVIDIA Super Admin only",
            )
        if len(parties) != 1 or parties[0].client_id is not None:
            raise BadRequestError(
                "Validation failed: field 'authorizedParties': '*' must be the only entry, without clientId",
                field="authorizedParties",
                rule="'*' must be the only entry, without clientId",
            )


class AuthorizationService:
    def __init__(self, database: Database, revoker: Revoker) -> None:
        self._database = database
        self._revoker = revoker

    async def _revoked(self, function_id: str, before: list[Party], after: set[str]) -> None:
        """Broadcast when an account that was a party is one no more."""
        if any(p.nca_id not in after for p in before):
            await self._revoker.revoked(revocations.revoked(function_ids=[function_id]))

    async def share(
        self,
        principal: Principal,
        function_id: str,
        version_id: str | None,
        parties: list[AuthorizedPartyDto],
    ) -> AuthorizedPartiesDto:
        """Replace one level's list (POST)."""
        async with self._database.transaction() as conn:
            # whose function it is first: another account's (or no) function is 404 whatever the list
            await _manageable(conn, principal, function_id, version_id, field="authorizedParties")
            _check_parties(principal, parties)
            before = await parties_repo.parties(conn, function_id, version_id)
            await parties_repo.replace(
                conn, function_id, version_id, [(p.nca_id, p.client_id) for p in parties]
            )
            stored = await _stored(conn, principal, function_id, version_id)
        await self._revoked(function_id, before, {p.nca_id for p in parties})
        return stored

    async def add_party(
        self, principal: Principal, function_id: str, version_id: str | None, party: AuthorizedPartyDto
    ) -> AuthorizedPartiesDto:
        async with self._database.transaction() as conn:
            await _manageable(conn, principal, function_id, version_id, field="authorizedParty")
            _check_parties(principal, [party])
            current = await parties_repo.parties(conn, function_id, version_id)
            if not current:
                raise NotFoundError(
                    f"Function '{function_id}' has no authorized parties to add to; "
                    "use POST to create the list"
                )
            if any(p.nca_id == party.nca_id for p in current):
                raise ConflictError(f"Account '{party.nca_id}' is already an authorized party")
            if party.nca_id == PUBLIC or any(p.nca_id == PUBLIC for p in current):
                raise BadRequestError(
                    "'*' must be the only authorized party",
                    field="authorizedParty",
                    rule="'*' must be the only authorized party",
                )
            await parties_repo.add(conn, function_id, version_id, party.nca_id, party.client_id)
            return await _stored(conn, principal, function_id, version_id)

    async def remove_party(
        self, principal: Principal, function_id: str, version_id: str | None, party: AuthorizedPartyDto
    ) -> AuthorizedPartiesDto:
        async with self._database.transaction() as conn:
            await _manageable(conn, principal, function_id, version_id, field="authorizedParty")
            if not await parties_repo.remove(conn, function_id, version_id, party.nca_id):
                raise NotFoundError(f"Account '{party.nca_id}' is not an authorized party")
            stored = await _stored(conn, principal, function_id, version_id)
        await self._revoker.revoked(revocations.revoked(function_ids=[function_id]))
        return stored

    async def clear(
        self, principal: Principal, function_id: str, version_id: str | None
    ) -> AuthorizedPartiesDto:
        async with self._database.transaction() as conn:
            await _manageable(conn, principal, function_id, version_id, field="functionId", clearing=True)
            before = await parties_repo.parties(conn, function_id, version_id)
            await parties_repo.clear(conn, function_id, version_id)
        await self._revoked(function_id, before, set())
        return _dto(function_id, principal.nca_id, version_id, [])

    async def get_function(self, principal: Principal, function_id: str) -> list[AuthorizedPartiesDto]:
        """One entry per version: its own list plus the inherited function-level list."""
        async with self._database.reading() as conn:
            versions = await owned_function(conn, principal, function_id)
            parties = await parties_repo.all_parties(conn, function_id)
        out = []
        for version in versions:
            mine = [p for p in parties if p.version_id in (None, version.version_id)]
            out.append(_dto(function_id, principal.nca_id, version.version_id, mine))
        return out

    async def get_version(
        self, principal: Principal, function_id: str, version_id: str
    ) -> AuthorizedPartiesDto:
        async with self._database.reading() as conn:
            await _owned(conn, principal, function_id, version_id)
            parties = await parties_repo.all_parties(conn, function_id)
        mine = [p for p in parties if p.version_id in (None, version_id)]
        return _dto(function_id, principal.nca_id, version_id, mine)
