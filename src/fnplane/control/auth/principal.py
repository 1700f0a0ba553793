"""Who is calling: the principal every control-plane and gateway decision is made for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fnplane.shared.revocations import Held

# The three API-key resource kinds of NVCF (nvcf-api.md 5.4).
ACCOUNT_FUNCTIONS = "account-functions"
AUTHORIZED_FUNCTIONS = "authorized-functions"
FUNCTION = "function"


@dataclass(frozen=True)
class ResourceGrant:
    """One `{type, id}` entry of an API-key policy, e.g. `function` / `<fid>/<vid|*>`."""

    type: str
    id: str

    def covers_function(self, function_id: str, version_id: str | None, *, owned: bool) -> bool:
        """Does the grant cover that version (`version_id` None: the whole function, every version,
        which a grant on one version `F/V` does not)?"""
        if self.type == ACCOUNT_FUNCTIONS:
            return owned
        if self.type == AUTHORIZED_FUNCTIONS:
            return not owned
        if self.type == FUNCTION:
            fid, _, vid = self.id.partition("/")
            if fid != function_id:
                return False
            return vid in ("", "*") or vid == version_id
        return False


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    `resources` is None for JWTs (no resource filter: they see their account and what is shared
    with it) and a tuple of grants for API keys.
    """

    nca_id: str
    subject: str
    kind: Literal["api_key", "jwt"]
    scopes: frozenset[str]
    resources: tuple[ResourceGrant, ...] | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # when the credential expires (seconds since 1970): nothing may cache it longer
    valid_until: float | None = field(default=None, compare=False)

    def held(self, function_id: str | None = None) -> Held:
        """This credential (on that function), as a revocation matches it."""
        return Held(self.extra.get("key_id"), self.extra.get("client_id"), self.nca_id, function_id)

    def has_any_scope(self, *scopes: str) -> bool:
        return any(scope in self.scopes for scope in scopes)

    def may_access_function(self, function_id: str, version_id: str | None, *, owned: bool) -> bool:
        """The API-key resource filter (`version_id` None: the whole function); JWTs pass (account
        visibility is checked separately)."""
        if self.resources is None:
            return True
        return any(grant.covers_function(function_id, version_id, owned=owned) for grant in self.resources)

    def may_create_functions(self) -> bool:
        if self.resources is None:
            return True
        return any(grant.type == ACCOUNT_FUNCTIONS for grant in self.resources)
