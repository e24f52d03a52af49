"""The Auth0 stand-in failing a share of the create calls: 5xx, 429, answers lost.

Clients retry the 503 answers (and "request in progress") as people and scripts do:
most with the same Idempotency-Key (the replay path), some without one (an API client
that keeps no key, a reloaded page). Some people submit the same e-mail twice. After
the stream, `signup reconcile --older-than 0` settles what stayed unknown.
"""

from __future__ import annotations

import asyncio
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

SEED = seed(4242)
SIGNUPS = 120
CLIENTS = 8
ATTEMPTS = 8
FAULTS = {
    "share_500": 0.08,
    "share_503": 0.08,
    "share_429": 0.03,
    "share_create_then_hang": 0.08,  # created, answer after hang_seconds > our timeout
    "share_create_then_500": 0.08,
}


def plan(seed: int) -> list[SignUpRecord]:
    rng = random.Random(seed)
    records: list[SignUpRecord] = []
    for i in range(SIGNUPS):
        key = str(uuid.uuid4()) if rng.random() < 0.75 else None
        if i % 10 == 9:  # the same person again, later, from another tab
            first = records[i - 5]
            records.append(SignUpRecord(i, first.email, first.password, key))
        else:
            records.append(SignUpRecord(i, f"fault{i}@example.com", password_for(i), key))
    return records


async def test_auth0_faults_leave_one_event_per_account_and_no_password_anywhere(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue, services: Services
) -> None:
    received = Received()
    await received.consume(bound_queue)
    db = tmp_path / "signup.db"
    records = plan(SEED)
    async with running_standin(latency=0.02, seed=SEED, hang_seconds=1.0, **FAULTS) as standin:
        env = auth0_env(
            f"sqlite+aiosqlite:///{db}",
            exchange_name,
            standin,
            SIGNUP_AUTH0_TIMEOUT_SECONDS="0.5",
            SIGNUP_LOG_LEVEL="DEBUG",  # more lines to search for passwords
        )
        service = await services.start(services.new(env, "serve"))
        queue: asyncio.Queue[SignUpRecord] = asyncio.Queue()
        for record in records:
            queue.put_nowait(record)

        async def client(number: int) -> None:
            rng = random.Random(f"{SEED}-{number}")
            async with aiohttp.ClientSession() as http:
                while not queue.empty():
                    record = queue.get_nowait()
                    for _ in range(ATTEMPTS):
                        answer = await post_signup(http, service.url, record.body(), record.key)
                        record.answers.append(answer)
                        if answer.status != 503 and not answer.in_progress:
                            break
                        await asyncio.sleep(min(answer.retry_after or 1.0, rng.uniform(0.3, 1.0)))

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        assert_design_answers(records, allow_connection_errors=False)

        await standin_quiet(standin)
        before = SqliteProbe(db).signups_by_status()
        report, reconcile_output = await reconcile(env)
        accounts = accounts_of(standin)
        probe = SqliteProbe(db)

        def drained() -> bool:
            return (
                probe.outbox_unpublished() == 0
                and probe.outbox_ids() <= received.ids()
                and set(accounts) <= set(received.ids_by_user())
            )

        await wait_for(
            drained,
            60,
            "every account's event on the queue",
            lambda: f"unpublished {probe.outbox_unpublished()}, accounts {len(accounts)}",
        )
        await asyncio.sleep(0.5)
        counters = standin.state.counters

    every, final = tally(records)
    print(
        f"\nAuth0 faults {FAULTS}: {SIGNUPS} sign-ups by {CLIENTS} clients; answers "
        f"{dict(every)}; final {dict(final)}; stand-in faults {dict(counters.faults)}, "
        f"creates {dict(counters.create_status)}, look-ups {dict(counters.lookup_status)}; "
        f"sign-ups before reconcile {before}; reconcile {report}; accounts {len(accounts)}; "
        f"events {len(received.ids())} distinct / {len(received.events)} delivered"
    )
    emails = list(accounts.values())
    assert len(emails) == len(set(emails)), "two accounts for one e-mail"
    assert_one_event_per_account(received, accounts)
    assert probe.outbox_ids() == received.ids()
    assert "pending" not in probe.signups_by_status(), probe.signups_by_status()
    for record in records:
        final_answer = record.final
        if final_answer is not None and final_answer.status == 201:
            assert accounts.get(final_answer.body["user_id"]) == record.email, final_answer.body
    assert_no_password_leak(
        {r.password for r in records},
        {"service logs": services.logs(), "reconcile output": reconcile_output},
        {**probe.file_bytes(), **{f"message {i}": b for i, b in enumerate(received.bodies)}},
    )


async def test_a_retry_without_the_key_after_a_lost_answer_leaves_one_event(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue, services: Services
) -> None:
    """The case the stream above found: an attempt left pending, its retry made the account.

    Reconciling the first attempt must not queue a second event for the same account, nor
    adopt the account: it carries the retry's intent, and only that request's password is
    provably its own (security issue 16: a stranger's retry would look just the same).
    """
    received = Received()
    await received.consume(bound_queue)
    db = tmp_path / "signup.db"
    person = SignUpRecord(0, "ada@example.com", password_for(0), "first-key")
    async with running_standin(share_500=1.0) as standin:
        env = auth0_env(f"sqlite+aiosqlite:///{db}", exchange_name, standin)
        service = await services.start(services.new(env, "serve"))
        async with aiohttp.ClientSession() as http:
            first = await post_signup(http, service.url, person.body(), person.key)
            assert first.status == 503, first  # Auth0 answered 500: outcome unknown, pending
            assert not standin.state.users
            standin.configure(share_500=0.0)
            second = await post_signup(http, service.url, person.body(), None)
            assert second.status == 201, second
            report, _ = await reconcile(env)
            assert (report["completed"], report["abandoned"]) == (0, 1), report
            # The abandoned attempt released its key: the replay is a new request for a
            # registered address.
            replay = await post_signup(http, service.url, person.body(), person.key)
            assert replay.status == 409, replay
        probe = SqliteProbe(db)
        await wait_for(
            lambda: probe.outbox_unpublished() == 0 and probe.outbox_ids() <= received.ids(),
            30,
            "the outbox drained",
        )
        await asyncio.sleep(0.5)
        assert_one_event_per_account(received, accounts_of(standin))
        assert len(received.ids()) == 1
