"""Repository ports: what the service layer may ask of storage, inside one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from signup.domain.events import UserRegistered
from signup.domain.model import CreatedAccount, SignUp, SignUpStatus


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    event_id: str
    routing_key: str
    event_type: str
    payload: bytes
    created_at: datetime
    attempts: int = 0
    # The row's place in the outbox: a later row has a higher one.
    position: int = 0


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    pending: int
    oldest_pending_at: datetime | None
    published: int


class SignUpRepository(Protocol):
    async def add(self, signup: SignUp) -> None: ...

    async def get(self, signup_id: str) -> SignUp | None: ...

    async def by_idempotency_key(self, key: str) -> SignUp | None: ...

    async def unsettled_for_email(self, email: str) -> list[SignUp]:
        """Pending or abandoned sign-ups of this e-mail, oldest first: attempts whose
        account may exist without its event."""
        ...

    async def pending_before(self, cutoff: datetime, limit: int) -> list[SignUp]: ...

    async def created_for(self, user_id: str, email: str, account_email: str) -> SignUp | None:
        """The sign-up that completed with this account (under either e-mail)."""
        ...

    async def settle(self, signup: SignUp, *, expected: SignUpStatus) -> bool:
        """Write the sign-up's new state if it is still `expected`; False if someone else won."""
        ...


class OutboxRepository(Protocol):
    async def add(self, event: UserRegistered) -> None: ...

    async def claim(
        self, holder: str, until: datetime, now: datetime, limit: int
    ) -> list[OutboxEntry]:
        """Lease up to `limit` unpublished entries (oldest first) that no live lease holds."""
        ...

    async def unpublished(self, limit: int, after: int = 0) -> list[OutboxEntry]:
        """Up to `limit` unpublished entries past position `after`, oldest first, leased or
        not (a plain read)."""
        ...

    async def mark_published(self, event_ids: list[str], at: datetime) -> None: ...

    async def release(self, event_ids: list[str], error: str) -> None: ...

    async def status(self) -> OutboxStatus: ...

    async def select_for_replay(
        self, since: datetime | None, event_id: str | None, limit: int, after_id: int
    ) -> list[tuple[int, OutboxEntry]]: ...


class UserRepository(Protocol):
    """The local identity provider's own accounts."""

    async def add(self, account: CreatedAccount) -> None:
        """Raises `EmailAlreadyRegistered` when the e-mail is taken."""
        ...

    async def exists(self, email: str) -> bool: ...

    async def by_email(self, email: str) -> CreatedAccount | None: ...


class LeaseRepository(Protocol):
    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take or renew the lease `name`; False while another holder's lease is live."""
        ...

    async def release(self, name: str, holder: str) -> None: ...
