"""`kill -9` of `signup serve` (Auth0 mode) at random moments of a stream of sign-ups.

The stand-in answers in 30 ms, so requests are in flight at every kill: some intents
are committed without their outcome, some accounts exist at the provider without a
completed sign-up. After the stream, `signup reconcile --older-than 0` settles them and
the relay drains the outbox. Then: one event id per account, no event without one, and
every answer was one of the design's (or a connection error that a kill explains).
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
    Received,
    Services,
    SignUpRecord,
    SqliteProbe,
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

SEED = seed(20261126)
KILLS = 4
CLIENTS = 8
LATENCY = 0.03


async def test_kill_9_during_concurrent_signups_loses_and_duplicates_nothing(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue, services: Services
) -> None:
    kill_rng = random.Random(SEED)
    received = Received()
    await received.consume(bound_queue)
    db = tmp_path / "signup.db"
    async with running_standin(latency=LATENCY, seed=SEED) as standin:
        env = auth0_env(
            f"sqlite+aiosqlite:///{db}",
            exchange_name,
            standin,
            # A replay with the same key waits 3 × this for an earlier attempt in flight.
            SIGNUP_AUTH0_TIMEOUT_SECONDS="2",
        )
        service = services.new(env, "serve")
        await services.start(service)

        up = asyncio.Event()
        up.set()
        generation = [0]  # bumped at each kill
        unexplained: list[tuple[str, str]] = []
        records: list[SignUpRecord] = []
        stop = asyncio.Event()
        numbers = itertools.count()

        async def sign_up(http: aiohttp.ClientSession, record: SignUpRecord) -> None:
            for _ in range(4):
                seen = generation[0]
                await asyncio.wait_for(up.wait(), 60)
                answer = await post_signup(http, service.url, record.body(), record.key)
                record.answers.append(answer)
                if answer.status is not None:
                    return
                if generation[0] == seen:
                    unexplained.append((record.email, answer.error))
                    return
                # Retried once the service is back: with the same Idempotency-Key when the
                # request had one (as the page's script does), without one otherwise (a
                # reloaded page).

        async def client() -> None:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                while not stop.is_set():
                    i = next(numbers)
                    keyed = random.Random(f"{SEED}-{i}").random() < 0.5
                    record = SignUpRecord(
                        i,
                        f"kill{i}@example.com",
                        password_for(i),
                        str(uuid.uuid4()) if keyed else None,
                    )
                    records.append(record)
                    await sign_up(http, record)

        kill_times: list[float] = []

        async def killer() -> None:
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(KILLS):
                await asyncio.sleep(kill_rng.uniform(0.5, 2.0))
                up.clear()
                generation[0] += 1
                kill_times.append(round(loop.time() - started, 2))
                service.kill()
                await services.start(service)
                up.set()
            await asyncio.sleep(1.0)
            stop.set()

        await asyncio.gather(killer(), *(client() for _ in range(CLIENTS)))
        assert not unexplained, f"connection errors with no kill to explain them: {unexplained}"
        assert_design_answers(records, allow_connection_errors=True)
        assert_conflicts_explained(records)

        await standin_quiet(standin)
        report, reconcile_output = await reconcile(env)
        accounts = accounts_of(standin)
        probe = SqliteProbe(db)

        def drained() -> bool:
            published = received.ids()
            users = set(received.ids_by_user())
            return (
                probe.outbox_unpublished() == 0
                and probe.outbox_ids() <= published
                and set(accounts) <= users
            )

        await wait_for(
            drained,
            60,
            "every account's event on the queue",
            lambda: (
                f"unpublished {probe.outbox_unpublished()}, accounts {len(accounts)}, "
                f"events {len(received.ids())}"
            ),
        )
        await asyncio.sleep(0.5)  # a late duplicate would show here

    every, final = tally(records)
    print(
        f"\nkill -9: {len(records)} sign-ups by {CLIENTS} clients, kills at {kill_times} s; "
        f"answers {dict(every)}; final {dict(final)}; reconcile {report}; "
        f"accounts {len(accounts)}, events {len(received.ids())} distinct / "
        f"{len(received.events)} delivered; sign-ups {probe.signups_by_status()}; "
        f"stand-in creates {dict(standin.state.counters.create_status)}"
    )
    assert len(kill_times) == KILLS
    assert_one_event_per_account(received, accounts)
    assert probe.outbox_ids() == received.ids(), "every queued event, and only those, arrived"
    assert "pending" not in probe.signups_by_status(), probe.signups_by_status()
    for record in records:
        final_answer = record.final
        if final_answer is not None and final_answer.status == 201:
            user_id = final_answer.body["user_id"]
            assert accounts.get(user_id) == record.email, (record.email, final_answer.body)
    assert_no_password_leak(
        [r.password for r in records],
        {"service logs": services.logs(), "reconcile output": reconcile_output},
        {**probe.file_bytes(), **{f"message {i}": b for i, b in enumerate(received.bodies)}},
    )
