"""The sweep against the Auth0 stand-in over HTTP, on SQLite and PostgreSQL (issue 19): it
finds the accounts Auth0's events missed, waits out the search index's delay through its
overlap, pages, and a second sweep finds nothing new; form accounts stay the form's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signup.bootstrap import Container, bootstrap
from signup.domain.commands import RegisterUser
from signup.domain.events import UserRegistered
from signup.domain.model import Applicant
from signup.service_layer.sweep import CHECKPOINT
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, running_standin

pytestmark = pytest.mark.timeout(120)

INDEX_DELAY = 0.5


@pytest.fixture
def started(database_url: str, make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    @asynccontextmanager
    async def start() -> AsyncIterator[tuple[Auth0Standin, Container]]:
        async with running_standin(search_index_delay=INDEX_DELAY) as standin:
            settings = make_settings(
                database_url=database_url,
                identity_provider="auth0",
                auth0_domain=standin.domain,
                auth0_client_id=standin.client_id,
                auth0_client_secret=standin.client_secret,
                auth0_base_url=standin.url,
            )
            container = bootstrap(settings)
            try:
                yield standin, container
            finally:
                await container.aclose()

    return start


async def events(container: Container) -> list[UserRegistered]:
    entries = await container.uow.read(lambda tx: tx.outbox.unpublished(10_000))
    return [UserRegistered.from_json(e.payload) for e in entries]


async def test_the_sweep_finds_what_the_stream_missed_and_then_nothing_new(
    started: Callable[..., Any],
) -> None:
    async with started() as (standin, container):
        assert container.sweep is not None
        form = await container.registration.register(
            RegisterUser(Applicant("ada@example.com", "Ada", None), "violet tractor anthem")
        )
        social = standin.create_outside("social", "grace@example.com", given_name="Grace")
        dashboard = standin.create_outside("dashboard", "staff@example.com")
        # Not in the index yet: the first sweep sees none of them.
        first = await container.sweep.run()
        assert first.outcomes["announced"] == 0
        await asyncio.sleep(INDEX_DELAY + 0.1)
        # The next run reaches back past the last one's end by the overlap: all found.
        second = await container.sweep.run()
        assert second.outcomes["announced"] == 2
        assert second.outcomes["repeat"] == 1  # the form's own account
        third = await container.sweep.run()
        assert third.outcomes["announced"] == 0 and third.outcomes["repeat"] == 3
        seen = {e.data.user_id: e for e in await events(container)}
        assert sorted(seen) == sorted([form.user_id, social["user_id"], dashboard["user_id"]])
        assert seen[form.user_id].data.origin == "form"
        assert seen[social["user_id"]].data.origin == "sweep"
        assert seen[social["user_id"]].data.is_social is True
        assert seen[dashboard["user_id"]].data.connection == "Username-Password-Authentication"
        stored = await container.uow.read(lambda tx: tx.checkpoints.get(CHECKPOINT))
        assert stored is not None and stored <= datetime.now(UTC)
        origins = await container.uow.read(lambda tx: tx.announced.count_by_origin())
        assert origins == {"form": 1, "sweep": 2}


async def test_a_window_past_the_cap_is_split_and_paged_over_http(
    started: Callable[..., Any],
) -> None:
    async with started() as (standin, container):
        assert container.sweep is not None
        container.sweep.per_page, container.sweep.cap = 20, 100
        made_at = datetime.now(UTC) - timedelta(minutes=5)
        for n in range(230):
            standin.create_outside(
                "social",
                f"p{n}@example.com",
                created_at=made_at + timedelta(milliseconds=700 * n),
            )
        await asyncio.sleep(INDEX_DELAY + 0.1)
        report = await container.sweep.run(made_at - timedelta(seconds=1))
        assert report.outcomes["announced"] == 230
        assert report.windows > 1
        assert standin.state.counters.search_calls == report.searches
        assert len({e.data.user_id for e in await events(container)}) == 230


async def test_the_sweep_runs_beside_the_relay_when_set(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with running_standin() as standin:
        settings = make_settings(
            database_url=database_url,
            identity_provider="auth0",
            auth0_domain=standin.domain,
            auth0_client_id=standin.client_id,
            auth0_client_secret=standin.client_secret,
            auth0_base_url=standin.url,
            auth0_sweep_every_seconds="0.2",
        )
        container = bootstrap(settings)
        assert container.sweeper is not None
        user = standin.create_outside("social", "lin@example.com")
        container.start_relay()
        try:
            async with asyncio.timeout(30):
                while not await container.uow.read(
                    lambda tx: tx.announced.event_for(user["user_id"])
                ):
                    await asyncio.sleep(0.05)
            origins = await container.uow.read(lambda tx: tx.announced.count_by_origin())
            assert origins == {"sweep": 1}  # the round beside the relay announced it
        finally:
            await container.aclose()
    assert make_settings(auth0_sweep_every_seconds="").auth0_sweep_every_seconds is None
