"""The unit of work: every state change and its outbox row commit together, or not at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from signup.service_layer.ports import (
    AnnouncedAccounts,
    AttemptNoticeRepository,
    CheckpointRepository,
    ConsentRepository,
    LeaseRepository,
    OutboxRepository,
    SightingRepository,
    SignUpRepository,
    UserRepository,
)

T = TypeVar("T")


class Transaction(Protocol):
    @property
    def signups(self) -> SignUpRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def leases(self) -> LeaseRepository: ...

    @property
    def consents(self) -> ConsentRepository: ...

    @property
    def announced(self) -> AnnouncedAccounts: ...

    @property
    def sightings(self) -> SightingRepository: ...

    @property
    def checkpoints(self) -> CheckpointRepository: ...

    @property
    def attempt_notices(self) -> AttemptNoticeRepository: ...


Work = Callable[[Transaction], Awaitable[T]]


class UnitOfWork(Protocol):
    async def run(self, work: Work[T]) -> T:
        """Run `work` in a transaction and commit it; an exception rolls all of it back.

        `work` may run more than once (after a retry of its batch): it must only touch
        the database through the transaction it is given.
        """
        ...

    async def read(self, work: Work[T], *, quick: bool = False) -> T:
        """Run read-only `work` on a consistent snapshot.

        `quick`: a few indexed lookups, which may run without leaving the event loop.
        """
        ...
