"""The sweep's searches go behind the sign-ups at the rate gate: while sign-up calls wait
there, or the tenant's bucket is down to its last calls, a search waits (bounded)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from signup.adapters.auth0 import Auth0IdentityProvider
from signup.adapters.auth0.search import Auth0AccountSearch


class Gate:
    queued = 0
    remaining: int | None = None


class Answer:
    status = 200

    def json(self) -> Any:
        return {"users": [], "total": 0}


class Provider:
    users_url = "http://auth0.invalid/api/v2/users"

    def __init__(self) -> None:
        self.gate = Gate()
        self.searches: list[dict[str, str]] = []

    async def management(self, method: str, url: str, *, params: dict[str, str]) -> Answer:
        self.searches.append(params)
        return Answer()


def search_on(provider: Provider, **knobs: float) -> Auth0AccountSearch:
    return Auth0AccountSearch(cast(Auth0IdentityProvider, provider), pause_seconds=0.01, **knobs)


async def one_search(search: Auth0AccountSearch) -> None:
    moment = datetime(2026, 12, 5, tzinfo=UTC)
    await search.created_between(moment, moment, page=0, per_page=100)


async def test_a_search_waits_while_sign_ups_wait_at_the_gate() -> None:
    provider = Provider()
    provider.gate.queued = 3
    search = search_on(provider)
    task = asyncio.ensure_future(one_search(search))
    await asyncio.sleep(0.1)
    assert provider.searches == [] and not task.done()
    provider.gate.queued = 0
    await asyncio.wait_for(task, 1)
    [params] = provider.searches
    assert params["q"].startswith("created_at:[") and params["search_engine"] == "v3"
    assert params["sort"] == "created_at:1" and params["include_totals"] == "true"
    assert search.yielded == 1


async def test_a_search_leaves_the_last_tokens_to_sign_ups() -> None:
    provider = Provider()
    provider.gate.remaining = 2
    task = asyncio.ensure_future(one_search(search_on(provider)))
    await asyncio.sleep(0.1)
    assert provider.searches == []
    provider.gate.remaining = 5
    await asyncio.wait_for(task, 1)
    assert len(provider.searches) == 1


async def test_the_wait_is_bounded_so_the_sweep_is_never_starved_for_ever() -> None:
    provider = Provider()
    provider.gate.queued = 1
    await asyncio.wait_for(one_search(search_on(provider, max_yield_seconds=0.05)), 1)
    assert len(provider.searches) == 1
