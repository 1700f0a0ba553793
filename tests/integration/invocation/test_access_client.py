"""HttpAccessAuthority against the real control plane served over HTTP."""

from __future__ import annotations

import pytest
from invocation_stack import free_port

from fnplane.invocation.access_client import HttpAccessAuthority
from fnplane.shared import errors, scopes
from fnplane.up.server import HttpServer


async def test_http_authority_grants_like_the_in_process_one(stack):
    fn = await stack.deploy()
    port = free_port()
    server = HttpServer(stack.control._transport.app, host="127.0.0.1", port=port)  # type: ignore[attr-defined]
    await server.start("127.0.0.1")
    authority = HttpAccessAuthority(f"http://127.0.0.1:{port}")
    try:
        grant = await authority.grant(stack.admin_key, scopes.INVOKE_FUNCTION, fn["id"], None)
        assert grant.nca_id == "nvcf-default"
        assert [v.version_id for v in grant.versions] == [fn["versionId"]]
        assert grant.versions[0].status == "ACTIVE"
        with pytest.raises(errors.UnauthorizedError):
            await authority.grant("nvapi-wrong", scopes.INVOKE_FUNCTION, fn["id"], None)
        with pytest.raises(errors.NotFoundError):
            await authority.grant(
                stack.admin_key, scopes.INVOKE_FUNCTION, "00000000-0000-4000-8000-000000000000"
            )
    finally:
        await authority.aclose()
        await server.aclose(2.0)
