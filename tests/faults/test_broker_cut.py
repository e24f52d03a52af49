"""The broker cut off in the middle of a stream of sign-ups, then back.

`signup serve` (local provider, SQLite) reaches RabbitMQ through a `TcpProxy` that the
test cuts: every open connection dropped, new ones refused. The shared broker itself is
not touched. Sign-ups must keep succeeding meanwhile (the outbox holds their events),
and every event must arrive once the proxy forwards again.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from faultkit import (
    Received,
    Services,
    SignUpRecord,
    SqliteProbe,
    assert_design_answers,
    assert_no_password_leak,
    common_env,
    password_for,
    post_signup,
    tally,
    wait_for,
)

from signup.testing.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

CLIENTS = 4
BEFORE, CUT, AFTER = 2.0, 4.0, 2.0  # seconds of the stream around and during the cut


async def readyz_broker(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/readyz") as response:
        return str(orjson.loads(await response.read()).get("broker"))


async def test_signups_succeed_while_the_broker_is_cut_off_and_every_event_follows(
    tmp_path: Path, exchange_name: str, bound_queue: AbstractQueue, services: Services
) -> None:
    received = Received()
    await received.consume(bound_queue)
    db = tmp_path / "signup.db"
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.open()
    try:
        env = common_env(
            f"sqlite+aiosqlite:///{db}",
            exchange_name,
            SIGNUP_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        )
        service = await services.start(services.new(env, "serve"))
        probe = SqliteProbe(db)
        records: list[SignUpRecord] = []
        numbers = itertools.count()
        stop = asyncio.Event()

        async def client() -> None:
            async with aiohttp.ClientSession() as http:
                while not stop.is_set():
                    i = next(numbers)
                    record = SignUpRecord(i, f"cut{i}@example.com", password_for(i), None)
                    records.append(record)
                    record.answers.append(await post_signup(http, service.url, record.body(), None))

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(BEFORE)
            await wait_for(lambda: len(received.ids()) > 0, 30, "a first event before the cut")
            await proxy.cut()
            created_at_cut = len(records)
            arrived_at_cut = len(received.ids())
            await asyncio.sleep(CUT)
            async with aiohttp.ClientSession() as http:
                broker_during_cut = await readyz_broker(http, service.url)
            held = probe.outbox_unpublished()
            created_during_cut = len(records) - created_at_cut
            arrived_during_cut = len(received.ids()) - arrived_at_cut
            await proxy.open()
            await asyncio.sleep(AFTER)
        finally:
            stop.set()
            await asyncio.gather(*clients)

        assert_design_answers(records, allow_connection_errors=False)
        every, _ = tally(records)
        assert set(every) == {"201"}, f"every sign-up succeeds, cut or not: {dict(every)}"
        assert created_during_cut > 0
        assert held > 0, "sign-ups made while the broker was away wait in the outbox"
        emails = {r.email for r in records}

        waited = await wait_for(
            lambda: len(received.ids()) >= len(records) and probe.outbox_unpublished() == 0,
            60,
            "every event after the broker came back",
            lambda: f"{len(received.ids())} of {len(records)} events",
        )
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as http:
            broker_after = await readyz_broker(http, service.url)
    finally:
        await proxy.cut()

    print(
        f"\nbroker cut: {len(records)} sign-ups by {CLIENTS} clients over "
        f"{BEFORE}+{CUT}+{AFTER} s, cut {CUT} s; {created_during_cut} made during the cut, "
        f"{arrived_during_cut} events arrived during it, {held} held in the outbox at its end "
        f"(readyz broker: {broker_during_cut}, after: {broker_after}); all drained "
        f"{waited:.1f} s after the stream; events {len(received.ids())} distinct / "
        f"{len(received.events)} delivered"
    )
    assert len(received.ids()) == len(records), "distinct event ids == 201 answers"
    assert {e["data"]["email"] for e in received.events} == emails
    grouped = received.ids_by_user()
    assert all(len(ids) == 1 for ids in grouped.values()), "one event id per account"
    assert {r.final.body["user_id"] for r in records if r.final} == set(grouped)
    assert probe.outbox_ids() == received.ids()
    assert_no_password_leak(
        [r.password for r in records],
        {"service logs": services.logs()},
        {**probe.file_bytes(), **{f"message {i}": b for i, b in enumerate(received.bodies)}},
    )
