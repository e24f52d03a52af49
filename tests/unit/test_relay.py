"""The relay with fakes: publish after confirm, retry on failure, one leader on SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from signup.domain.commands import RegisterUser
from signup.domain.model import Applicant
from signup.entrypoints.relay import RELAY_LEASE, Relay
from signup.service_layer.registration import RegistrationService
from signup.testing.fakes import FakeIdentityProvider, FakePublisher, FakeUnitOfWork, ManualClock


def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))


async def signed_up(uow: FakeUnitOfWork, now: ManualClock, count: int) -> None:
    service = RegistrationService(
        uow=uow, provider=FakeIdentityProvider(now), clock=now, source="s"
    )
    for i in range(count):
        await service.register(
            RegisterUser(Applicant(f"u{i}@example.com"), "violet tractor anthem")
        )


async def test_events_are_marked_sent_only_once_confirmed() -> None:
    uow, now, publisher = FakeUnitOfWork(), clock(), FakePublisher()
    await signed_up(uow, now, 3)
    publisher.down = True
    relay = Relay(uow=uow, publisher=publisher, clock=now, lease_seconds=10)
    assert await relay.drain_once() == (0, 3)
    assert (await uow.read(lambda tx: tx.outbox.status())).pending == 3
    publisher.down = False
    assert await relay.drain_once() == (3, 0), "a failed publish releases its claim"
    assert [e.event_id for e in publisher.sent] == list(uow.state.outbox)
    assert await relay.drain_once() == (0, 0)


async def test_a_follower_waits_out_its_poll_instead_of_asking_for_the_lease_on_every_wake() -> (
    None
):
    uow, now = FakeUnitOfWork(), clock()
    await uow.run(
        lambda tx: tx.leases.acquire(RELAY_LEASE, "leader", now(), datetime(2100, 1, 1, tzinfo=UTC))
    )
    follower = Relay(
        uow=uow,
        publisher=FakePublisher(),
        clock=now,
        exclusive=True,
        holder="follower",
        poll_seconds=0.1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    commits_before = uow.commits
    for _ in range(50):  # its own process keeps committing outbox rows
        follower.wake()
        await asyncio.sleep(0.01)
    stop.set()
    await task
    asks = uow.commits - commits_before
    assert 1 <= asks <= 10, f"the follower asked for the lease {asks} times in about 0.5 s"
