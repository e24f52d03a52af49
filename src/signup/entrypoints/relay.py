"""The outbox relay: publishes committed events, marks them sent only after the confirm."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from signup import metrics
from signup.adapters.broker import EventPublisher
from signup.adapters.repository import OutboxEntry
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

log = structlog.get_logger(__name__)
RELAY_LEASE = "relay"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{id(object()):x}"[:64]


@dataclass
class Relay:
    uow: UnitOfWork
    publisher: EventPublisher
    clock: Callable[[], datetime]
    batch_size: int = 500
    poll_seconds: float = 1.0
    lease_seconds: float = 30.0
    # On SQLite one relay publishes at a time (a lease row says which); on PostgreSQL
    # any number share the outbox, each claiming rows with FOR UPDATE SKIP LOCKED.
    exclusive: bool = False
    reconcile: Callable[[], Awaitable[object]] | None = None
    reconcile_every: float = 60.0
    gather_seconds: float = 0.005
    holder: str = field(default_factory=holder_name)
    published: int = field(default=0, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _leader: bool = field(default=False, init=False)
    _lease_until: datetime | None = field(default=None, init=False)

    def wake(self) -> None:
        """Called right after a commit that wrote outbox rows: no waiting for the poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("relay.started", holder=self.holder, exclusive=self.exclusive)
        backoff = 0.0
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self.reconcile_every
        last_drain = -self.gather_seconds
        while not stop.is_set():
            try:
                if self.exclusive and not await self._hold_lease():
                    # Not the leader: our own commits' wake-ups are no reason to ask again
                    # (each ask is a write transaction); wait out the poll period.
                    await self._sleep(stop, self.poll_seconds, wakeable=False)
                    continue
                # A short pause after the last batch lets a burst of commits make one
                # batch (one read, one publish, one write) instead of one each.
                pause = last_drain + self.gather_seconds - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                last_drain = loop.time()
                sent, failed = await self.drain_once()
                backoff = min(max(backoff * 2, 0.2), 5.0) if failed else 0.0
                if self.reconcile and loop.time() >= next_reconcile:
                    next_reconcile = loop.time() + self.reconcile_every
                    await self.reconcile()
                if sent and not failed:
                    continue  # more may be waiting
                await self._sleep(stop, backoff or self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay.cycle_failed")
                await self._sleep(stop, 1.0)
        if self.exclusive and self._leader:
            with contextlib.suppress(Exception):
                await self.uow.run(self._release_lease)
        log.info("relay.stopped", published=self.published)

    async def drain_once(self) -> tuple[int, int]:
        """Claim a batch, publish it with confirms, record what the broker confirmed."""
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)

        async def claim(tx: Transaction) -> list[OutboxEntry]:
            return await tx.outbox.claim(self.holder, until, now, self.batch_size)

        async def unpublished(tx: Transaction) -> list[OutboxEntry]:
            return await tx.outbox.unpublished(self.batch_size)

        self._wake.clear()
        # Exclusive (SQLite): the lease is the claim, only its holder publishes, so a
        # read will do; no write transaction to take the file's lock for each batch.
        entries = await (
            self.uow.read(unpublished, quick=True) if self.exclusive else self.uow.run(claim)
        )
        if not entries:
            return 0, 0
        result = await self.publisher.publish(entries)
        confirmed_at = self.clock()

        async def record(tx: Transaction) -> None:
            await tx.outbox.mark_published(result.confirmed, confirmed_at)
            for reason in set(result.failed.values()):
                ids = [i for i, r in result.failed.items() if r == reason]
                await tx.outbox.release(ids, reason)

        await self.uow.run(record)
        self.published += len(result.confirmed)
        metrics.PUBLISHES.labels("confirmed").inc(len(result.confirmed))
        if result.failed:
            metrics.PUBLISHES.labels("failed").inc(len(result.failed))
            log.warning(
                "relay.publish_failed",
                failed=len(result.failed),
                reason=next(iter(result.failed.values())),
            )
        return len(result.confirmed), len(result.failed)

    async def _hold_lease(self) -> bool:
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

    async def _sleep(self, stop: asyncio.Event, seconds: float, *, wakeable: bool = True) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


async def follow_commits(
    relay: Relay, changed: Callable[[], bool], stop: asyncio.Event, every: float = 0.01
) -> None:
    """Wake `relay` whenever another process commits (a relay apart from the web app).

    Looks every `every` seconds, so a burst of commits makes one batch, not one each.
    """
    while not stop.is_set():
        await asyncio.sleep(every)
        if changed():
            relay.wake()
