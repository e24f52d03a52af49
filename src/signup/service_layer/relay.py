"""The outbox relay: publishes committed events, marks them sent only after the confirm.

What to publish, who publishes (on SQLite: the holder of a `LeaderLock`, or of the
lease row where there is no lock), and how rows are batched are decided here
(docs/decisions/0008-relay-in-the-web-process.md); the broker behind `EventPublisher` is
an adapter (`signup.adapters.broker`), and so are the lock (`signup.adapters.leader_lock`)
and what wakes the relay on another process's commit (`signup.adapters.commit_watch`).
Reconciliation runs beside the relay, never inside its loop
(`signup.service_layer.reconciliation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from signup import metrics
from signup.service_layer.ports import EventPublisher, OutboxEntry, Timer, Timers
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

log = structlog.get_logger(__name__)
RELAY_LEASE = "relay"


class LeaderLock(Protocol):
    """Who publishes alone on a SQLite file: a lock that dies with its holder's process,
    so a restarted or standing-by relay takes over at its next try instead of waiting
    out a dead holder's lease (`signup.adapters.leader_lock`)."""

    def acquire(self) -> bool:
        """Take the lock without waiting; True if this holder has it (now or already)."""
        ...

    def release(self) -> None: ...


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()):x}"[:64]


class LoopTimers:
    """The running event loop's clock and timers (tests give a clock they move by hand)."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


@dataclass
class Relay:
    uow: UnitOfWork
    publisher: EventPublisher
    clock: Callable[[], datetime]
    batch_size: int = 500
    poll_seconds: float = 1.0
    lease_seconds: float = 30.0
    # On SQLite one relay publishes at a time (the holder of `leader_lock`; without
    # one, of a lease row); on PostgreSQL any number share the outbox, each claiming
    # rows with FOR UPDATE SKIP LOCKED.
    exclusive: bool = False
    # A lease row outlives a killed holder by up to `lease_seconds`, and no event went
    # out meanwhile (27.7 s after a kill -9, issue 18); the lock goes with the process.
    leader_lock: LeaderLock | None = None
    gather_seconds: float = 0.005
    # Rows taken at commit go out at once when there are this many (under load, each
    # commit has several); fewer wait up to `gather_seconds` for the next commits'.
    enough_rows: int = 4
    # Batches published and awaiting their confirms at once: the next batch goes out
    # while the broker is still confirming (writing to disk) the ones before it.
    max_in_flight: int = 8
    holder: str = field(default_factory=holder_name)
    # What the relay's pauses and polls are measured on; `clock` is for the rows' times.
    timers: Timers = field(default_factory=LoopTimers)
    published: int = field(default=0, init=False)
    taken_at_commit: int = field(default=0, init=False)  # batches that needed no read
    # Woken since the last read; and the future a sleeping relay waits on. One plain
    # future, not an Event waited on beside the stop signal: a wake-up then reaches the
    # relay in one turn of the loop instead of three.
    _woken: bool = field(default=False, init=False)
    _asleep: asyncio.Future[None] | None = field(default=None, init=False)
    _wakeable: bool = field(default=True, init=False)
    _leader: bool = field(default=False, init=False)
    _lease_until: datetime | None = field(default=None, init=False)
    _flying: set[asyncio.Task[tuple[int, int]]] = field(default_factory=set, init=False)
    _read_up_to: int = field(default=0, init=False)
    _failed: bool = field(default=False, init=False)
    _running: bool = field(default=False, init=False)
    _reading: bool = field(default=False, init=False)
    _backoff: float = field(default=0.0, init=False)
    # Rows taken at commit, waiting to go out together (at most `gather_seconds`).
    _held: list[OutboxEntry] = field(default_factory=list, init=False)
    _held_timer: Timer | None = field(default=None, init=False)
    _last_start: float = field(default=0.0, init=False)

    def committed(self, entries: list[OutboxEntry]) -> None:
        """Called right after a commit that wrote these outbox rows.

        While batches are in flight, rows that follow on from the last one read go out
        without a read and a turn of the loop for the relay to wake up (at the maximum,
        a turn is several milliseconds): at once if there are `enough_rows` or the last
        batch left `gather_seconds` ago, else with the next commits' rows by then.
        Otherwise the relay is woken.
        """
        if not self._may_take(entries):
            self.wake()
            return
        self._read_up_to = entries[-1].position
        self._held += entries
        if len(self._held) >= self.enough_rows:
            self._release_held()
        elif self._held_timer is None:
            wait = self._last_start + self.gather_seconds - self.timers.monotonic()
            self._held_timer = self.timers.call_later(max(wait, 0.0), self._release_held)

    def _release_held(self) -> None:
        held = self._held
        self._drop_held()
        if held:
            self.taken_at_commit += 1
            self._start(held)

    def _drop_held(self) -> None:
        """Forget rows taken at commit (still unpublished: the next read finds them)."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._held = []

    def _busy(self) -> bool:
        """Rows read or taken are out or about to go: a read starts past them."""
        return bool(self._flying or self._held)

    def _may_take(self, entries: list[OutboxEntry]) -> bool:
        if not (
            self.exclusive
            and self._running
            and self._leader
            and self._busy()
            and not self._failed
            and not self._reading
            and len(self._flying) < self.max_in_flight
            and self._still_leader()
        ):
            return False
        first = self._read_up_to + 1
        return all(e.position == first + i for i, e in enumerate(entries))

    def wake(self) -> None:
        """Called right after a commit that wrote outbox rows: no waiting for the poll."""
        self._woken = True
        if self._wakeable:
            self._rouse()

    def _rouse(self) -> None:
        if self._asleep is not None and not self._asleep.done():
            self._asleep.set_result(None)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("relay.started", holder=self.holder, exclusive=self.exclusive)
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self._rouse())
        self._running = True
        timers = self.timers
        last_drain = -self.gather_seconds
        try:
            while not stop.is_set():
                try:
                    if self.exclusive and not await self._hold_lease():
                        # Not the leader: our own commits' wake-ups are no reason to ask
                        # again (each ask is a write transaction); wait out the poll period.
                        await self._sleep(stop, self.poll_seconds, wakeable=False)
                        continue
                    if self._failed:
                        # Let every batch in flight settle before reading again from the
                        # start: what failed is read again, what went through is not.
                        self._drop_held()
                        await self._landed()
                        self._failed = False
                        self._woken = False
                        self._backoff = min(max(self._backoff * 2, 0.2), 5.0)
                        await self._sleep(stop, self._backoff)
                    # A short pause after the last batch lets a burst of commits make one
                    # batch (one read, one publish, one write) instead of one each.
                    pause = last_drain + self.gather_seconds - timers.monotonic()
                    if pause > 0:
                        await self._pause(pause)
                    last_drain = timers.monotonic()
                    launched = await self._launch()
                    if launched:
                        if len(self._flying) >= self.max_in_flight:
                            await asyncio.wait(self._flying, return_when=asyncio.FIRST_COMPLETED)
                        continue  # more may be waiting
                    if not self._failed:
                        await self._sleep(stop, self.poll_seconds)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("relay.cycle_failed")
                    await self._sleep(stop, 1.0)
        finally:
            self._running = False
            stopping.cancel()
            self._release_held()
            try:
                await self._landed()
            finally:
                # Even when cancelled: a relay of this process may lead again later.
                if self.leader_lock is not None:
                    self._leader = False
                    self.leader_lock.release()
        if self.leader_lock is None and self.exclusive and self._leader:
            with contextlib.suppress(Exception):
                await self.uow.run(self._release_lease)
        log.info("relay.stopped", published=self.published)

    async def drain_once(self) -> tuple[int, int]:
        """Take a batch, publish it with confirms, record what the broker confirmed."""
        entries = await self._take()
        return await self._send(entries) if entries else (0, 0)

    async def _launch(self) -> bool:
        """Take the next batch and publish it without waiting for its confirms."""
        entries = await self._take()
        if not entries:
            return False
        self._start(entries)
        return True

    def _start(self, entries: list[OutboxEntry]) -> None:
        self._last_start = self.timers.monotonic()
        task = asyncio.create_task(self._send(entries), name="relay-batch")
        self._flying.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[tuple[int, int]]) -> None:
        self._flying.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("relay.record_failed", error=f"{type(error).__name__}: {error}"[:300])

    async def _landed(self) -> None:
        """Wait until every batch in flight has its outcome recorded."""
        while self._flying:
            await asyncio.wait(list(self._flying))

    async def _take(self) -> list[OutboxEntry]:
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        # Past what is in flight: those rows stay unpublished until their confirms are
        # recorded. With nothing in flight every unpublished row is read again.
        after = self._read_up_to if self._busy() else 0

        async def claim(tx: Transaction) -> list[OutboxEntry]:
            return await tx.outbox.claim(self.holder, until, now, self.batch_size)

        async def unpublished(tx: Transaction) -> list[OutboxEntry]:
            return await tx.outbox.unpublished(self.batch_size, after)

        self._woken = False
        # Exclusive (SQLite): the lease is the claim, only its holder publishes, so a
        # read will do; no write transaction to take the file's lock for each batch.
        # Rows committed while a read is under way are left to the next read.
        self._reading = True
        try:
            entries = await (
                self.uow.read(unpublished, quick=True) if self.exclusive else self.uow.run(claim)
            )
        finally:
            self._reading = False
        if entries:
            self._read_up_to = max(e.position for e in entries)
        return entries

    async def _send(self, entries: list[OutboxEntry]) -> tuple[int, int]:
        result = await self.publisher.publish(entries)
        confirmed_at = self.clock()

        async def record(tx: Transaction) -> None:
            await tx.outbox.mark_published(result.confirmed, confirmed_at)
            for reason in set(result.failed.values()):
                ids = [i for i, r in result.failed.items() if r == reason]
                await tx.outbox.release(ids, reason)

        try:
            await self.uow.run(record)
        except Exception:
            self._failed = True
            self.wake()
            raise
        self.published += len(result.confirmed)
        metrics.PUBLISHES.labels("confirmed").inc(len(result.confirmed))
        if not result.failed:
            self._backoff = 0.0
        else:
            self._failed = True
            self.wake()
            metrics.PUBLISHES.labels("failed").inc(len(result.failed))
            # Disconnected: the publisher has said once that events wait in the outbox;
            # a warning every retry would bury it.
            (log.warning if self.publisher.connected else log.debug)(
                "relay.publish_failed",
                failed=len(result.failed),
                reason=next(iter(result.failed.values())),
            )
        return len(result.confirmed), len(result.failed)

    @property
    def leading(self) -> bool:
        """Publishing, not standing by (always, for a relay that shares the outbox)."""
        return not self.exclusive or self._still_leader()

    def _still_leader(self) -> bool:
        if not self._leader:
            return False
        if self.leader_lock is not None:
            return True  # held until released: no expiry to check
        return self._lease_until is not None and self.clock() < self._lease_until

    async def _hold_lease(self) -> bool:
        if self.leader_lock is not None:
            # A non-blocking flock: a system call, no transaction, so a relay standing
            # by may ask every poll and takes over within one poll of the holder's end.
            leader = self.leader_lock.acquire()
            if leader != self._leader:
                log.info("relay.lease", leader=leader, holder=self.holder, by="lock")
            self._leader = leader
            return leader
        now = self.clock()
        lease = timedelta(seconds=self.lease_seconds)
        if (
            self._leader
            and self._lease_until is not None
            and now < self._lease_until - lease * 2 / 3
        ):
            # Renewed less than a third of a lease ago: still ours for two thirds of one,
            # so no write transaction on every cycle (a drain takes far less).
            return True
        until = now + lease

        async def acquire(tx: Transaction) -> bool:
            return await tx.leases.acquire(RELAY_LEASE, self.holder, now, until)

        leader = await self.uow.run(acquire)
        if leader != self._leader:
            log.info("relay.lease", leader=leader, holder=self.holder)
        self._leader = leader
        self._lease_until = until if leader else None
        return leader

    async def _release_lease(self, tx: Transaction) -> None:
        self._leader, self._lease_until = False, None
        await tx.leases.release(RELAY_LEASE, self.holder)

    async def _pause(self, seconds: float) -> None:
        """`asyncio.sleep`, on `timers`: neither a wake-up nor the stop signal ends it."""
        paused = asyncio.get_running_loop().create_future()
        timer = self.timers.call_later(
            seconds, lambda: None if paused.done() else paused.set_result(None)
        )
        try:
            await paused
        finally:
            timer.cancel()

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, wakeable: bool = True) -> None:
        if stop.is_set() or (wakeable and self._woken):
            return
        self._asleep = asleep = asyncio.get_running_loop().create_future()
        self._wakeable = wakeable
        timer = self.timers.call_later(seconds, self._rouse)
        try:
            await asleep
        finally:
            timer.cancel()
            self._asleep, self._wakeable = None, True
