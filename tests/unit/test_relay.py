"""The relay with fakes: publish after confirm, retry on failure, one leader on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from signup.domain.commands import RegisterUser
from signup.domain.model import Applicant
from signup.entrypoints.relay import RELAY_LEASE, Relay
from signup.service_layer.ports import OutboxEntry, PublishResult
from signup.service_layer.registration import RegistrationService
from signup.testing.fakes import FakeIdentityProvider, FakePublisher, FakeUnitOfWork, ManualClock


def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))


async def signed_up(
    uow: FakeUnitOfWork,
    now: ManualClock,
    count: int,
    first: int = 0,
    provider: FakeIdentityProvider | None = None,
) -> None:
    service = RegistrationService(
        uow=uow, provider=provider or FakeIdentityProvider(now), clock=now, source="s"
    )
    for i in range(first, first + count):
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


class HeldPublisher(FakePublisher):
    """Confirms only when the test lets it; batches listed in `failing` are nacked."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.failing: set[int] = set()

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        number = len(self.batches)
        self.batches.append([e.event_id for e in entries])
        await self.release.wait()
        if number in self.failing:
            return PublishResult(failed={e.event_id: "nacked" for e in entries})
        return await super().publish(entries)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


@dataclass
class Held:
    """Sign-ups in a fake store, and the lease holder's relay publishing to a held broker."""

    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    now: ManualClock = field(default_factory=clock)
    publisher: HeldPublisher = field(default_factory=HeldPublisher)

    def __post_init__(self) -> None:
        self.provider = FakeIdentityProvider(self.now)
        self.signed = 0

    async def sign_up(self, count: int) -> None:
        await signed_up(self.uow, self.now, count, first=self.signed, provider=self.provider)
        self.signed += count

    def relay(self, **options: Any) -> Relay:
        return Relay(
            uow=self.uow, publisher=self.publisher, clock=self.now, exclusive=True, **options
        )

    @asynccontextmanager
    async def relaying(self, signed: int, batches: int, **options: Any) -> AsyncIterator[Relay]:
        """`signed` sign-ups, then the relay running until `batches` batches are out."""
        await self.sign_up(signed)
        relay = self.relay(**options)
        async with running(relay):
            try:
                await until(lambda: len(self.publisher.batches) == batches)
                yield relay
            finally:
                self.publisher.release.set()  # a failed test does not leave batches held


@asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_the_next_batch_goes_out_while_the_last_awaits_its_confirms() -> None:
    held = Held()
    async with held.relaying(5, batches=3, batch_size=2) as relay:
        assert held.publisher.sent == [], "three batches out, none confirmed yet"
        sent_ids = [i for batch in held.publisher.batches for i in batch]
        assert sorted(sent_ids) == sorted(held.uow.state.outbox), "each once"
        held.publisher.release.set()
        await until(lambda: relay.published == 5)
    assert [e.event_id for e in held.publisher.sent] == list(held.uow.state.outbox)
    assert (await held.uow.read(lambda tx: tx.outbox.status())).pending == 0


async def test_a_failed_batch_is_sent_again_and_the_confirmed_ones_are_not() -> None:
    held = Held()
    held.publisher.failing = {0}
    async with held.relaying(4, batches=2, batch_size=2) as relay:
        held.publisher.release.set()
        await until(lambda: relay.published == 4)
    first, _second, *again = held.publisher.batches
    assert again == [first], "only the nacked batch is published again"
    assert sorted(e.event_id for e in held.publisher.sent) == sorted(held.uow.state.outbox)


async def test_rows_committed_while_batches_fly_go_out_without_a_read() -> None:
    held = Held()
    async with held.relaying(2, batches=1, poll_seconds=60) as relay:
        first = list(held.uow.state.outbox)
        await held.sign_up(2)  # rows 3 and 4
        later = [e for i, e in held.uow.state.outbox.items() if i not in first]
        relay.committed(later[:1])
        relay.committed(later[1:])  # another commit within the gathering time: same batch
        await until(lambda: len(held.publisher.batches) == 2)
        assert held.publisher.batches == [first, [e.event_id for e in later]]
        assert relay.taken_at_commit == 1, "sent as handed over, not read by a woken relay"
        held.publisher.release.set()
        await until(lambda: relay.published == 4)
    assert len(held.publisher.sent) == 4, "each event once"


async def test_rows_that_do_not_follow_on_are_left_to_the_relay_to_read() -> None:
    held = Held()
    async with held.relaying(2, batches=2, batch_size=1) as relay:
        await held.sign_up(2)
        *_, fourth = held.uow.state.outbox.values()
        relay.committed([fourth])  # row 3 is not read yet: 4 must wait for it
        held.publisher.release.set()
        await until(lambda: relay.published == 4)
    sent = [e.event_id for e in held.publisher.sent]
    assert sent == list(held.uow.state.outbox), "in order, once"
