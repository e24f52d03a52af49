"""The ports: what the service layer asks of the world outside it, as Protocols.

Each is implemented in `signup.adapters` (and by the fakes in `signup.testing.fakes`):

| port | adapters |
| --- | --- |
| `IdentityProvider`, `AccountDirectory` | `adapters.auth0`, `adapters.local_users` |
| `SignUpRepository`, `OutboxRepository`, `UserRepository`, `LeaseRepository` | `adapters.sql` |
| `AnnouncedAccounts`, `SightingRepository`, `CheckpointRepository` | `adapters.sql` |
| `AccountSearch` | `adapters.auth0` |
| `AttemptNoticeRepository` | `adapters.sql` |
| `Liveness` | `adapters.liveness` |
| `EventPublisher` | `adapters.broker` |
| `Mailer` | `adapters.mailer` |
| `Crm` | `adapters.crm` |
| `ChallengeSigner`, `SpentSolutions` | `adapters.challenge` |
| `PasswordRanges` | `adapters.pwned` |

The unit of work that hands out the repositories is `signup.service_layer.unit_of_work`.
The layers are checked by import-linter (`[tool.importlinter]` in pyproject.toml,
docs/decisions/0018-layers-enforced.md): nothing here may import an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable

from signup.domain.events import OutboxEvent
from signup.domain.form import ConsentRecord
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus

# ---- identity ----------------------------------------------------------------------


class IdentityProvider(Protocol):
    """Creates accounts (Auth0, the local user store, test fakes).

    `create_user` raises, from `signup.domain.errors`:
    - `EmailAlreadyRegistered` when the e-mail already has an account;
    - `FieldRejected` when the provider refuses a value (its password policy, say);
    - `ProviderUnavailable(retry_after=…)` when nothing was created and a later try may work;
    - `OutcomeUnknown` when the request may have been carried out but the answer was lost.
    """

    name: str
    # True when the account is a row the service layer writes inside its own transaction
    # (the local store): no intent record is needed, the outcome is never unknown, and
    # the service layer finds accounts in its own store. False: the provider keeps the
    # accounts, and must be an `AccountDirectory` too.
    transactional: bool

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount: ...

    async def close(self) -> None: ...


@runtime_checkable
class AccountDirectory(Protocol):
    """Finds the accounts a provider keeps, by e-mail (a 409's owner, reconciliation)."""

    async def find_by_email(self, email: str) -> list[CreatedAccount]: ...


# ---- proof of work ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedSolution:
    """A solution of a challenge this service signed: the challenge (its id) and when it
    expires. Whether it has expired, or was used, is the service layer's to say."""

    id: str
    expires_at: datetime


class ChallengeSigner(Protocol):
    """Hands out proof-of-work challenges and recognises solutions of its own."""

    def issue(self, expires_at: datetime) -> dict[str, Any]:
        """A new challenge, as the page's widget fetches it, valid until `expires_at`."""
        ...

    def check(self, token: str) -> SignedSolution | None:
        """The solution in `token` when it solves a challenge signed with one of our keys
        (expired or not); None when it is malformed, wrong or foreign."""
        ...


class SpentSolutions(Protocol):
    """The solutions already used, remembered until they expire, shared by all processes."""

    async def spend(self, solution_id: str, owner: str, expires_at: datetime) -> bool:
        """Record the solution as used by `owner`; False when another owner used it first
        (the same owner again is True: a request repeated with its Idempotency-Key)."""
        ...

    async def close(self) -> None: ...


# ---- storage, inside one transaction ---------------------------------------------


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
    # Counted only when asked (`status(count_published=True)`): it reads every published
    # row, which the probes (/readyz, /metrics) must not.
    published: int | None = None


class SignUpRepository(Protocol):
    async def prune_settled(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` sign-ups settled before `before` (never a pending one),
        oldest first; how many."""
        ...

    async def add(self, signup: SignUp, *, worked_by: str | None = None) -> None:
        """`worked_by`: the instance (`Liveness.hold`) whose request works on it."""
        ...

    async def worker_of(self, signup_id: str) -> str | None:
        """The instance working on this sign-up; None when no request does."""
        ...

    async def release(self, signup_id: str, worker: str) -> None:
        """The request of `worker` ended and left the sign-up pending: no one works on it."""
        ...

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


class AttemptNoticeRepository(Protocol):
    """When each address's owner was last told of a sign-up attempt with it (`key`: a
    SHA-256 of the case-folded address: no address is stored)."""

    async def sent_after(self, key: str, since: datetime) -> bool: ...

    async def claim(self, key: str, now: datetime, since: datetime) -> bool:
        """Record a notice sent `now`, unless one was sent after `since`: True when
        recorded (the caller then writes the notice's event in the same transaction)."""
        ...

    async def prune(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` records of notices sent before `before`; how many."""
        ...


class OutboxRepository(Protocol):
    async def add(self, event: OutboxEvent) -> None: ...

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

    async def status(self, *, count_published: bool = False) -> OutboxStatus: ...

    async def prune_published(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` entries published before `before`, oldest first; how many."""
        ...

    async def select_for_replay(
        self, since: datetime | None, event_id: str | None, limit: int, after_id: int
    ) -> list[tuple[int, OutboxEntry]]: ...


class AnnouncedAccounts(Protocol):
    """Every account that has had its `user.new`, by the provider's user id: never pruned
    (outbox rows and settled sign-ups are), so it is the one dedupe key, whichever path
    (the form, Auth0's events, the sweep) saw the account first."""

    async def event_for(self, user_id: str) -> str | None:
        """The id of the account's one event; None while it has none."""
        ...

    async def add(self, user_id: str, event_id: str, origin: str, at: datetime) -> None:
        """Record the account's event, in the transaction that writes its outbox row.
        Raises `AccountAlreadyAnnounced` when another transaction recorded it first."""
        ...

    async def count_by_origin(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class Sighting:
    """An account Auth0 told us of while the form's own sign-up of it was still pending:
    the form's completion announces it (with the form's data); should that sign-up be
    abandoned instead, the sighting is announced as it was seen."""

    account: CreatedAccount
    origin: str
    auth0_event_id: str | None
    seen_at: datetime


class SightingRepository(Protocol):
    async def add(self, sighting: Sighting) -> None:
        """Keep it (a repeat of one already kept changes nothing)."""
        ...

    async def oldest(self, limit: int) -> list[Sighting]: ...

    async def remove(self, user_id: str) -> None: ...


class CheckpointRepository(Protocol):
    """Named points in time that a background job has done its work up to (the sweep)."""

    async def get(self, name: str) -> datetime | None: ...

    async def put(self, name: str, at: datetime) -> None: ...


class UserRepository(Protocol):
    """The local identity provider's own accounts."""

    async def add(self, account: CreatedAccount) -> None:
        """Raises `EmailAlreadyRegistered` when the e-mail is taken."""
        ...

    async def exists(self, email: str) -> bool: ...

    async def by_email(self, email: str) -> CreatedAccount | None: ...

    async def by_id(self, user_id: str) -> CreatedAccount | None: ...

    async def mark_verified(self, user_id: str) -> bool:
        """Set the account's `email_verified` if it is not yet; False when it already was
        (or there is no such account): one caller ever gets True for an account."""
        ...


class ConsentRepository(Protocol):
    """The consent record kept with each account; the consent texts served so far."""

    async def add(self, user_id: str, records: Sequence[ConsentRecord]) -> None: ...

    async def of_user(self, user_id: str) -> list[ConsentRecord]: ...

    async def texts(self) -> dict[tuple[str, str, str], str]:
        """(consent id, version, language) -> SHA-256 of the text, as first served."""
        ...

    async def remember_texts(
        self, texts: Mapping[tuple[str, str, str], str], now: datetime
    ) -> None: ...


class LeaseRepository(Protocol):
    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take or renew the lease `name`; False while another holder's lease is live."""
        ...

    async def release(self, name: str, holder: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a user search: the query's `total`, how many users the page held
    (`length`), and those of them that can be announced (with an e-mail address)."""

    total: int
    length: int
    accounts: list[CreatedAccount]


class AccountSearch(Protocol):
    """The provider's user search by creation time (Auth0: `GET /api/v2/users`, v3)."""

    async def created_between(
        self, start: datetime, end: datetime, *, page: int, per_page: int
    ) -> SearchPage:
        """Users created in [start, end], oldest first. Raises `ProviderUnavailable`."""
        ...


class Liveness(Protocol):
    """Which instances (processes) are still running.

    Each holds a lock named by its instance id while it runs, which the system takes
    away when it dies (`kill -9` too): a pending sign-up whose worker no longer holds
    its lock is worked on by no one.
    """

    async def hold(self) -> str:
        """This instance's id, its lock held from the first call until `close`."""
        ...

    async def alive(self, instance: str) -> bool: ...

    async def close(self) -> None: ...


# ---- publishing the outbox ---------------------------------------------------------


@dataclass
class PublishResult:
    confirmed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class EventPublisher(Protocol):
    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        """Publish all entries at once; an id is in `confirmed` only after the broker's ack."""
        ...

    @property
    def connected(self) -> bool: ...

    async def close(self) -> None: ...


# ---- breached passwords -----------------------------------------------------------


class RangeUnavailable(Exception):
    """The range could not be had (time-out, connection refused, an error or malformed
    answer): nothing is known about the password."""


class PasswordRanges(Protocol):
    """A Pwned Passwords range API: `range(prefix)` is the raw answer for a 5-hex-digit
    SHA-1 prefix (`SUFFIX:COUNT` lines), or `RangeUnavailable`."""

    async def range(self, prefix: str) -> str: ...

    async def close(self) -> None: ...


# ---- time ---------------------------------------------------------------------------


class Timer(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """The event loop's clock and timers, behind a seam so that tests move time by hand
    (`signup.testing.clock.ManualClock` fits) instead of sleeping."""

    def monotonic(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once `delay` seconds have passed on `monotonic`."""
        ...


# ---- the consumers' side effects ---------------------------------------------------
# Both raise `signup.service_layer.failures.PermanentFailure` (park the message) or
# `TransientFailure` (retry it later).


class Mailer(Protocol):
    """Delivers one complete message (headers From/To/Subject/Message-ID already set)."""

    async def send(self, message: EmailMessage) -> None: ...


class Crm(Protocol):
    """Creates or updates one contact; `idempotency_key` is the event id."""

    async def push_contact(self, idempotency_key: str, contact: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...
