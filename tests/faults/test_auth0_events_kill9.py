"""`kill -9` of `signup serve` while Auth0's event stream delivers to `POST /hooks/auth0`
(issue 19): the stream retries every delivery until a 2xx (as Auth0 does), so what a
kill cut off comes again; nothing answered 2xx is lost, and no account gets two events.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from aio_pika.abc import AbstractQueue
from faultkit import (
    Received,
    Services,
    SqliteProbe,
    accounts_of,
    assert_one_event_per_account,
    auth0_env,
    seed,
    wait_for,
)

from signup.testing.auth0_standin import running_standin

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

SEED = seed(20261205)
KILLS = 3
ACCOUNTS = 120
TOKEN = "fault-hook-token-0123456789abcdef"


async def test_kill_9_while_the_stream_delivers_loses_and_duplicates_nothing(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue, services: Services
) -> None:
    rng = random.Random(SEED)
    received = Received()
    await received.consume(bound_queue)
    db = tmp_path / "signup.db"
    async with running_standin(seed=SEED) as standin:
        env = auth0_env(
            f"sqlite+aiosqlite:///{db}",
            exchange_name,
            standin,
            SIGNUP_AUTH0_EVENTS_TOKEN=TOKEN,
        )
        service = services.new(env, "serve")
        await services.start(service)
        standin.configure(
            stream_url=f"{service.url}/hooks/auth0",
            stream_token=TOKEN,
            stream_share_duplicate=0.3,
            stream_max_delay=0.5,
            stream_retry_seconds=0.1,
        )

        async def make_accounts() -> None:
            for n in range(ACCOUNTS):
                kind = "social" if n % 2 else "dashboard"
                standin.create_outside(kind, f"k{n}@example.com")
                await asyncio.sleep(0.02)

        async def killer() -> None:
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                service.kill()
                await services.start(service)

        await asyncio.gather(make_accounts(), killer())
        async with asyncio.timeout(90):
            await standin.stream.drained()
        accounts = accounts_of(standin)
        probe = SqliteProbe(db)

        def drained() -> bool:
            return probe.outbox_unpublished() == 0 and set(accounts) <= set(received.ids_by_user())

        await wait_for(
            drained,
            60,
            "every account's event on the queue",
            lambda: f"unpublished {probe.outbox_unpublished()}, events {len(received.ids())}",
        )
        await asyncio.sleep(0.5)  # a late duplicate would show here
    counters = standin.stream.counters
    print(
        f"\nkill -9 x{KILLS} while streaming: {counters.events} events, {counters.attempts} "
        f"attempts, answers {dict(counters.statuses)}; {len(received.ids())} user.new"
    )
    assert len(accounts) == ACCOUNTS
    assert counters.statuses.get("no answer", 0) > 0, "the kills cut deliveries off"
    assert_one_event_per_account(received, accounts)
