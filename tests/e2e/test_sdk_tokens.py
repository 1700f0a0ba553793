"""A service account's token, cached by the SDK and fetched again before it expires: a platform whose
tokens live 3 s (FNPLANE_CONTROL_JWT_TTL_S)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sdk_platform import Platform, start_platform

from fnplane.sdk import AsyncClient, UnauthorizedError

TOKEN_TTL_S = 3


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("tokens") / "home"
    yield from start_platform(home, {"FNPLANE_CONTROL_JWT_TTL_S": str(TOKEN_TTL_S)})


async def test_the_token_is_cached_and_replaced_before_it_expires(short_tokens: Platform) -> None:
    url = short_tokens.up.url
    async with AsyncClient(url, short_tokens.key) as admin:
        account = await admin.create_service_account("sdk-refresh", ["list_functions"])
    async with AsyncClient(
        url, client_id=account["clientId"], client_secret=account["clientSecret"], scopes=["list_functions"]
    ) as client:
        await client.list_function_ids()
        await client.list_functions()
        first = client.credentials.token
        assert first and client.credentials.fetches == 1  # cached across calls

        await asyncio.sleep(TOKEN_TTL_S + 0.5)  # the first token's lifetime passes
        async with AsyncClient(url, first) as stale:
            with pytest.raises(UnauthorizedError):
                await stale.list_function_ids()

        await client.list_function_ids()
        assert client.credentials.fetches == 2 and client.credentials.token != first
        assert client.credentials.rejections == 0  # replaced before use, never refused
