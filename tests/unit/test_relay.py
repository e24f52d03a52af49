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
from signup.service_layer.ports import OutboxEntry, PublishResult
from signup.service_layer.registration import RegistrationService
from signup.service_layer.relay import RELAY_LEASE, Relay
from signup.testing.clock import ManualClock as ManualTimers
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
    uow, now, timers = FakeUnitOfWork(), clock(), ManualTimers()
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
        timers=timers,
    )
    commits_before = uow.commits

    def asks() -> int:
        return uow.commits - commits_before

    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        await until(lambda: asks() == 1 and timers.timers == 1)  # asked, then asleep
        for _ in range(50):  # its own process keeps committing outbox rows
            follower.wake()
            await asyncio.sleep(0)  # a turn of the loop for the follower to react
        assert asks() == 1, "a wake-up is no reason to ask again"
        for period in (2, 3):
            timers.advance(0.1)
            await until(lambda p=period: timers.timers == 1 and asks() >= p)
            assert asks() == period, "one ask per poll period"
    finally:
        stop.set()
        await task


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


async def until(
    condition: Callable[[], bool], timers: ManualTimers | None = None, turns: int = 10_000
) -> None:
    """Run the loop until `condition` holds, moving `timers` on 1 ms a turn: the relay's
    pauses pass on its clock, not the wall's, and nothing here waits for real time."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)  # one turn of the loop, not a wait
        if timers is not None:
            timers.advance(0.001)
    raise AssertionError(f"not so after {turns} turns of the loop")


@dataclass
class Held:
    """Sign-ups in a fake store, and the lease holder's relay publishing to a held broker."""

    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    now: ManualClock = field(default_factory=clock)
    publisher: HeldPublisher = field(default_factory=HeldPublisher)
    timers: ManualTimers = field(default_factory=ManualTimers)

    def __post_init__(self) -> None:
        self.provider = FakeIdentityProvider(self.now)
        self.signed = 0

    async def sign_up(self, count: int) -> None:
        await signed_up(self.uow, self.now, count, first=self.signed, provider=self.provider)
        self.signed += count

    def relay(self, **options: Any) -> Relay:
        return Relay(
            uow=self.uow,
            publisher=self.publisher,
            clock=self.now,
            exclusive=True,
            timers=self.timers,
            **options,
        )

    @asynccontextmanager
    async def relaying(self, signed: int, batches: int, **options: Any) -> AsyncIterator[Relay]:
        """`signed` sign-ups, then the relay running until `batches` batches are out."""
        await self.sign_up(signed)
        relay = self.relay(**options)
        async with running(relay, self.timers):
            try:
                await until(lambda: len(self.publisher.batches) == batches, self.timers)
                yield relay
            finally:
                self.publisher.release.set()  # a failed test does not leave batches held


@asynccontextmanager
async def running(relay: Relay, timers: ManualTimers) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await until(task.done, timers)  # a pause under way ends on the relay's clock
        await task


async def test_the_next_batch_goes_out_while_the_last_awaits_its_confirms() -> None:
    held = Held()
    async with held.relaying(5, batches=3, batch_size=2) as relay:
        assert held.publisher.sent == [], "three batches out, none confirmed yet"
        sent_ids = [i for batch in held.publisher.batches for i in batch]
        assert sorted(sent_ids) == sorted(held.uow.state.outbox), "each once"
        held.publisher.release.set()
        await until(lambda: relay.published == 5, held.timers)
    assert [e.event_id for e in held.publisher.sent] == list(held.uow.state.outbox)
    assert (await held.uow.read(lambda tx: tx.outbox.status())).pending == 0


async def test_a_failed_batch_is_sent_again_and_the_confirmed_ones_are_not() -> None:
    held = Held()
    held.publisher.failing = {0}
    async with held.relaying(4, batches=2, batch_size=2) as relay:
        held.publisher.release.set()
        await until(lambda: relay.published == 4, held.timers)
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
        await until(lambda: len(held.publisher.batches) == 2, held.timers)
        assert held.publisher.batches == [first, [e.event_id for e in later]]
        assert relay.taken_at_commit == 1, "sent as handed over, not read by a woken relay"
        held.publisher.release.set()
        await until(lambda: relay.published == 4, held.timers)
    assert len(held.publisher.sent) == 4, "each event once"


async def test_rows_that_do_not_follow_on_are_left_to_the_relay_to_read() -> None:
    held = Held()
    async with held.relaying(2, batches=2, batch_size=1) as relay:
        await held.sign_up(2)
        *_, fourth = held.uow.state.outbox.values()
        relay.committed([fourth])  # row 3 is not read yet: 4 must wait for it
        held.publisher.release.set()
        await until(lambda: relay.published == 4, held.timers)
    sent = [e.event_id for e in held.publisher.sent]
    assert sent == list(held.uow.state.outbox), "in order, once"
