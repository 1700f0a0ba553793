"""The revocation broadcast: which cached credentials and open invocations every gateway drops.

The control plane publishes one `CredentialsRevoked` on `subjects.CREDENTIALS_REVOKED` (core NATS)
whenever a credential stops being valid or may do less than before: an API key deleted or
re-authorized, a service account deleted or its secret rotated, an account deleted, a function's
authorized parties reduced, the admin key replaced. It names ids only (key ids, client ids, account
ids, function ids), never a credential or a hash of one: the ids are what list endpoints show anyway.

A receiver drops every cached grant the event `covers()` and re-checks the open invocations it covers.
Pure: no I/O; the bus modules move the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import NamedTuple, TypeVar

import msgspec

from fnplane.shared.errors import FnplaneError


class RevocationError(FnplaneError):
    """A revocation message that does not follow this module's format."""


class Held(NamedTuple):
    """What a cached grant or an open invocation is for: whose credential, and on which function."""

    key_id: str | None
    client_id: str | None
    nca_id: str
    function_id: str | None = None


class CredentialsRevoked(msgspec.Struct, frozen=True, omit_defaults=True):
    # API key ids (`/v1/keys/{id}`)
    key_ids: tuple[str, ...] = msgspec.field(default=(), name="keyIds")
    # service-account / JWT client ids (`sub`)
    client_ids: tuple[str, ...] = msgspec.field(default=(), name="clientIds")
    # every credential of these accounts
    nca_ids: tuple[str, ...] = msgspec.field(default=(), name="ncaIds")
    # every grant on these functions (their authorized parties shrank)
    function_ids: tuple[str, ...] = msgspec.field(default=(), name="functionIds")
    # everything (a receiver that may have missed events, e.g. after a reconnect)
    everything: bool = False

    def covers(self, held: Held) -> bool:
        """Does this event touch that grant (of that credential, on that function)?"""
        return (
            self.everything
            or (held.key_id is not None and held.key_id in self.key_ids)
            or (held.client_id is not None and held.client_id in self.client_ids)
            or held.nca_id in self.nca_ids
            or (held.function_id is not None and held.function_id in self.function_ids)
        )

    @property
    def empty(self) -> bool:
        return not (self.everything or self.key_ids or self.client_ids or self.nca_ids or self.function_ids)


EVERYTHING = CredentialsRevoked(everything=True)

K = TypeVar("K")
V = TypeVar("V")


def forget_covered(
    entries: MutableMapping[K, V], event: CredentialsRevoked, held: Callable[[K, V], Held]
) -> None:
    """Delete from a cache every entry the event covers (`held` says what an entry is for)."""
    if event.everything:
        entries.clear()
        return
    for key in [k for k, v in entries.items() if event.covers(held(k, v))]:
        del entries[key]


def revoked(
    *,
    key_ids: Iterable[str] = (),
    client_ids: Iterable[str] = (),
    nca_ids: Iterable[str] = (),
    function_ids: Iterable[str] = (),
) -> CredentialsRevoked:
    return CredentialsRevoked(
        key_ids=tuple(key_ids),
        client_ids=tuple(client_ids),
        nca_ids=tuple(nca_ids),
        function_ids=tuple(function_ids),
    )


_decoder = msgspec.json.Decoder(CredentialsRevoked)


def encode(event: CredentialsRevoked) -> bytes:
    return msgspec.json.encode(event)


def decode(data: bytes) -> CredentialsRevoked:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RevocationError(f"malformed revocation message: {exc}") from None
