"""What a gateway does when it hears that credentials were revoked (shared/revocations.py).

    RequestBus  -- CREDENTIALS_REVOKED / reconnect -->  Revocations.handle(event)
                                                           1. authority.forget(event)   (in-process
                                                              control plane: its caches first)
                                                           2. CachedAccess.forget(event)
                                                           3. re-check the open invocations it covers

`OpenInvocations` holds every invocation in flight on this gateway (pexec waits, SSE and other
streaming answers, direct invocations), indexed by credential. A covered invocation is re-checked
with a fresh grant for its credential and function; one whose credential is refused (401/403/404),
or whose version it may no longer invoke, is ended: a request still waiting for its answer gets that
error, a streaming answer breaks off, and the work is cancelled on the worker (a deleted version's
requests are left to finish: its workers drain what they hold). A re-check that
cannot reach the control plane leaves the invocation alone (the event may not have been about it).

After a reconnect to NATS a gateway cannot know what it missed: the bus hands in `EVERYTHING`, which
flushes the cache and re-checks every open invocation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Protocol

from fnplane.invocation.access import CachedAccess
from fnplane.shared import errors, scopes
from fnplane.shared.contracts import AccessAuthority
from fnplane.shared.models.access import AccessGrant
from fnplane.shared.revocations import CredentialsRevoked

log = logging.getLogger(__name__)

# at most this many re-checks run at once after one event (an EVERYTHING with many open streams)
RECHECK_CONCURRENCY = 16


class Revocable(Protocol):
    """An open invocation, as a revocation sees it (invoke.Invocation)."""

    @property
    def grant(self) -> AccessGrant: ...

    @property
    def bearer(self) -> str: ...

    @property
    def function_id(self) -> str: ...

    @property
    def version_id(self) -> str: ...

    def revoke(self, error: errors.FnplaneError) -> None:
        """End the invocation with `error`."""
        ...


def credential_of(grant: AccessGrant) -> str:
    return grant.key_id or grant.client_id or grant.subject


class OpenInvocations:
    """The invocations in flight on this gateway, by credential."""

    def __init__(self) -> None:
        self._by_credential: dict[str, set[Revocable]] = {}

    def add(self, invocation: Revocable) -> None:
        self._by_credential.setdefault(credential_of(invocation.grant), set()).add(invocation)

    def discard(self, invocation: Revocable) -> None:
        credential = credential_of(invocation.grant)
        held = self._by_credential.get(credential)
        if held is not None:
            held.discard(invocation)
            if not held:
                del self._by_credential[credential]

    def __len__(self) -> int:
        return sum(len(held) for held in self._by_credential.values())

    def covered(self, event: CredentialsRevoked) -> list[Revocable]:
        """The open invocations whose grant the event touches."""
        if event.everything or event.nca_ids or event.function_ids:
            candidates: Iterator[Revocable] = (i for held in self._by_credential.values() for i in held)
        else:
            candidates = (
                i for c in (*event.key_ids, *event.client_ids) for i in self._by_credential.get(c, ())
            )
        return [i for i in candidates if event.covers(i.grant.held(i.function_id))]


class Revocations:
    def __init__(self, authority: AccessAuthority, access: CachedAccess, open_invocations: OpenInvocations):
        self._authority = authority
        self._access = access
        self._open = open_invocations
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, event: CredentialsRevoked) -> None:
        """Forget at once (synchronously, before any other request is served), then re-check."""
        self._authority.forget(event)
        self._access.forget(event)
        covered = self._open.covered(event)
        if covered:
            task = asyncio.create_task(self._recheck(covered))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _recheck(self, covered: list[Revocable]) -> None:
        groups: dict[tuple[str, str], list[Revocable]] = {}
        for invocation in covered:
            groups.setdefault((invocation.bearer, invocation.function_id), []).append(invocation)
        limit = asyncio.Semaphore(RECHECK_CONCURRENCY)

        async def recheck(bearer: str, function_id: str, invocations: list[Revocable]) -> None:
            async with limit:
                try:
                    grant = await self._access.fresh_grant(bearer, scopes.INVOKE_FUNCTION, function_id)
                except (errors.UnauthorizedError, errors.ForbiddenError, errors.NotFoundError) as refused:
                    for invocation in invocations:
                        invocation.revoke(refused)
                    return
                except errors.FnplaneError as error:
                    log.warning("open invocations of function %s not re-checked: %s", function_id, error)
                    return
            visible = {v.version_id for v in grant.versions}
            for invocation in invocations:
                if invocation.version_id not in visible:
                    lost = await self._refusal(bearer, function_id, invocation.version_id)
                    if lost is not None:
                        invocation.revoke(lost)

        await asyncio.gather(*(recheck(b, f, group) for (b, f), group in groups.items()))

    async def _refusal(self, bearer: str, function_id: str, version_id: str) -> errors.FnplaneError | None:
        """Why a version left the credential's grant, asked of the version itself: the credential may
        no longer invoke it (403, 401), or None when the version was deleted (404). A deleted
        version's request is not ended here: its worker finishes what it holds before it stops,
        and nobody lost a right to the answer."""
        try:
            await self._access.fresh_grant(bearer, scopes.INVOKE_FUNCTION, function_id, version_id)
        except errors.NotFoundError:
            return None
        except (errors.UnauthorizedError, errors.ForbiddenError) as refused:
            return refused
        except errors.FnplaneError as error:
            log.warning("open invocations of version %s not re-checked: %s", version_id, error)
            return None
        return errors.ForbiddenError("the credential may no longer invoke this version")

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
