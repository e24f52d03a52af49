"""Two `signup serve` processes on one PostgreSQL database, one of them killed mid-stream.

Both run the relay (on PostgreSQL relays share the outbox, claiming rows with SKIP
LOCKED), both talk to one Auth0 stand-in, both publish to one exchange. Sign-ups are
spread over both; at a random moment one is killed with SIGKILL and its clients fail
over to the other (retrying what was in flight). The survivor's relay must take over the
killed one's claims, and `signup reconcile --older-than 0` its unfinished sign-ups.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractQueue
from faultkit import (
    PgProbe,
    Received,
    Services,
    SignUpRecord,
    accounts_of,
    assert_conflicts_explained,
    assert_design_answers,
    assert_no_password_leak,
    assert_one_event_per_account,
    auth0_env,
    password_for,
    post_signup,
    reconcile,
    seed,
    standin_quiet,
    tally,
    wait_for,
)

from signup.testing.auth0_standin import running_standin

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

SEED = seed(77)
CLIENTS = 8
AFTER_KILL = 3.0


async def test_two_instances_on_postgresql_one_killed_every_event_once(
    tmp_path: Path,
    exchange_name: str,
    bound_queue: AbstractQueue,
    postgres_url: str,
    services: Services,
) -> None:
    rng = random.Random(SEED)
    received = Received()
    await received.consume(bound_queue)
    probe = PgProbe(postgres_url)
    async with running_standin(latency=0.03, seed=SEED) as standin:
        env = auth0_env(postgres_url, exchange_name, standin, SIGNUP_AUTH0_TIMEOUT_SECONDS="2")
        first, second = services.new(env, "serve-a"), services.new(env, "serve-b")
        await asyncio.gather(services.start(first), services.start(second))
        alive = {first.url: True, second.url: True}
        records: list[SignUpRecord] = []
        numbers = itertools.count()
        stop = asyncio.Event()
        unexplained: list[tuple[str, str]] = []
        kill_at = rng.uniform(1.5, 3.0)

        async def sign_up(http: aiohttp.ClientSession, record: SignUpRecord) -> None:
            target = (first, second)[record.index % 2]
            for _ in range(3):
                url = target.url if alive[target.url] else first.url
                answer = await post_signup(http, url, record.body(), record.key)
                record.answers.append(answer)
                if answer.status is not None:
                    return
                if alive[url]:
                    unexplained.append((record.email, answer.error))
                    return
                # Fail over to the survivor; the same key if there was one.

        async def client() -> None:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                while not stop.is_set():
                    i = next(numbers)
                    keyed = random.Random(f"{SEED}-{i}").random() < 0.5
                    record = SignUpRecord(
                        i,
                        f"multi{i}@example.com",
                        password_for(i),
                        str(uuid.uuid4()) if keyed else None,
                    )
                    records.append(record)
                    await sign_up(http, record)

        async def killer() -> None:
            await asyncio.sleep(kill_at)
            alive[second.url] = False
            second.kill()
            await asyncio.sleep(AFTER_KILL)
            stop.set()

        await asyncio.gather(killer(), *(client() for _ in range(CLIENTS)))
        assert not unexplained, f"connection errors with no kill to explain them: {unexplained}"
        assert_design_answers(records, allow_connection_errors=True)
        assert_conflicts_explained(records)

        await standin_quiet(standin)
        before = await probe.signups_by_status()
        report, reconcile_output = await reconcile(env)
        accounts = accounts_of(standin)

        async def drained() -> bool:
            users = set(received.ids_by_user())
            return (
                await probe.outbox_unpublished() == 0
                and await probe.outbox_ids() <= received.ids()
                and set(accounts) <= users
            )

        await wait_for(
            drained,
            60,
            "every account's event on the queue",
            lambda: f"accounts {len(accounts)}, events {len(received.ids())}",
        )
        await asyncio.sleep(0.5)
        after = await probe.signups_by_status()
        outbox_ids = await probe.outbox_ids()
        dump = await probe.dump()

    every, final = tally(records)
    print(
        f"\ntwo instances on PostgreSQL: {len(records)} sign-ups by {CLIENTS} clients, "
        f"instance B killed at {kill_at:.2f} s; answers {dict(every)}; final {dict(final)}; "
        f"sign-ups before reconcile {before}; reconcile {report}; after {after}; "
        f"accounts {len(accounts)}; events {len(received.ids())} distinct / "
        f"{len(received.events)} delivered"
    )
    assert_one_event_per_account(received, accounts)
    assert outbox_ids == received.ids()
    assert "pending" not in after, after
    for record in records:
        final_answer = record.final
        if final_answer is not None and final_answer.status == 201:
            assert accounts.get(final_answer.body["user_id"]) == record.email, final_answer.body
    assert_no_password_leak(
        [r.password for r in records],
        {"service logs": services.logs(), "reconcile output": reconcile_output},
        {"database rows": dump, **{f"message {i}": b for i, b in enumerate(received.bodies)}},
    )
