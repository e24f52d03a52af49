"""In-memory fakes of the ports, for unit tests of the service layer (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from signup.domain.errors import (
    AccountAlreadyAnnounced,
    AccountAlreadyCompleted,
    EmailAlreadyRegistered,
    RequestInProgress,
)
from signup.domain.events import OutboxEvent
from signup.domain.form import ConsentRecord
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.ports import OutboxEntry, OutboxStatus, PublishResult, Sighting
from signup.service_layer.unit_of_work import Work

T = TypeVar("T")


@dataclass
class _State:
    signups: dict[str, SignUp] = field(default_factory=dict)
    outbox: dict[str, OutboxEntry] = field(default_factory=dict)
    published: dict[str, datetime] = field(default_factory=dict)
    claims: dict[str, datetime] = field(default_factory=dict)
    users: dict[str, CreatedAccount] = field(default_factory=dict)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    workers: dict[str, str | None] = field(default_factory=dict)  # signups.worked_by
    consents: dict[str, list[ConsentRecord]] = field(default_factory=dict)  # by user id
    consent_texts: dict[tuple[str, str, str], str] = field(default_factory=dict)
    announced: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)
    sightings: dict[str, Sighting] = field(default_factory=dict)
    checkpoints: dict[str, datetime] = field(default_factory=dict)
    notices: dict[str, datetime] = field(default_factory=dict)  # attempt_notices


class FakeSignUps:
    async def prune_settled(self, before: datetime, limit: int) -> int:
        old = sorted(
            (s.requested_at, s.id)
            for s in self._s.signups.values()
            if s.status is not SignUpStatus.PENDING and s.requested_at < before
        )[:limit]
        for _, signup_id in old:
            del self._s.signups[signup_id]
        return len(old)

    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, signup: SignUp, *, worked_by: str | None = None) -> None:
        key = signup.idempotency_key
        if key and any(s.idempotency_key == key for s in self._s.signups.values()):
            raise RequestInProgress(key)
        self._s.signups[signup.id] = replace(signup)
        self._s.workers[signup.id] = worked_by

    async def worker_of(self, signup_id: str) -> str | None:
        return self._s.workers.get(signup_id)

    async def release(self, signup_id: str, worker: str) -> None:
        current = self._s.signups.get(signup_id)
        pending = current is not None and current.status is SignUpStatus.PENDING
        if pending and self._s.workers.get(signup_id) == worker:
            self._s.workers[signup_id] = None

    async def get(self, signup_id: str) -> SignUp | None:
        found = self._s.signups.get(signup_id)
        return replace(found) if found else None

    async def by_idempotency_key(self, key: str) -> SignUp | None:
        for signup in self._s.signups.values():
            if signup.idempotency_key == key:
                return replace(signup)
        return None

    async def unsettled_for_email(self, email: str) -> list[SignUp]:
        return sorted(
            (
                replace(s)
                for s in self._s.signups.values()
                if s.applicant.email == email
                and s.status in (SignUpStatus.PENDING, SignUpStatus.ABANDONED)
            ),
            key=lambda s: s.requested_at,
        )

    async def pending_before(self, cutoff: datetime, limit: int) -> list[SignUp]:
        pending = [
            replace(s)
            for s in self._s.signups.values()
            if s.status is SignUpStatus.PENDING and s.requested_at < cutoff
        ]
        return sorted(pending, key=lambda s: s.requested_at)[:limit]

    async def created_for(self, user_id: str, email: str, account_email: str) -> SignUp | None:
        for signup in self._s.signups.values():
            if (
                signup.status is SignUpStatus.CREATED
                and signup.user_id == user_id
                and signup.applicant.email in (email, account_email)
            ):
                return replace(signup)
        return None

    async def settle(self, signup: SignUp, *, expected: SignUpStatus) -> bool:
        current = self._s.signups.get(signup.id)
        if current is None or current.status is not expected:
            return False
        if signup.status is SignUpStatus.CREATED and any(  # ux_signups_created_user
            other.status is SignUpStatus.CREATED and other.user_id == signup.user_id
            for other in self._s.signups.values()
            if other.id != signup.id
        ):
            raise AccountAlreadyCompleted(signup.user_id or "")
        self._s.signups[signup.id] = replace(signup, requested_at=current.requested_at)
        return True


class FakeOutbox:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, event: OutboxEvent) -> None:
        assert event.id not in self._s.outbox, "one outbox row per event id"
        self._s.outbox[event.id] = OutboxEntry(
            event.id,
            event.routing_key,
            event.type,
            event.to_json(),
            event.time,
            position=len(self._s.outbox) + 1,
        )

    async def claim(
        self, holder: str, until: datetime, now: datetime, limit: int
    ) -> list[OutboxEntry]:
        free = [
            e
            for i, e in self._s.outbox.items()
            if i not in self._s.published and (i not in self._s.claims or self._s.claims[i] < now)
        ][:limit]
        for entry in free:
            self._s.claims[entry.event_id] = until
        return free

    async def unpublished(self, limit: int, after: int = 0) -> list[OutboxEntry]:
        return [
            e
            for i, e in self._s.outbox.items()
            if i not in self._s.published and e.position > after
        ][:limit]

    async def mark_published(self, event_ids: list[str], at: datetime) -> None:
        for event_id in event_ids:
            self._s.published[event_id] = at
            self._s.claims.pop(event_id, None)

    async def release(self, event_ids: list[str], error: str) -> None:
        for event_id in event_ids:
            self._s.claims.pop(event_id, None)

    async def status(self, *, count_published: bool = False) -> OutboxStatus:
        pending = [e for i, e in self._s.outbox.items() if i not in self._s.published]
        oldest = min((e.created_at for e in pending), default=None)
        return OutboxStatus(
            len(pending), oldest, len(self._s.published) if count_published else None
        )

    async def prune_published(self, before: datetime, limit: int) -> int:
        old = sorted((at, i) for i, at in self._s.published.items() if at < before)[:limit]
        for _, event_id in old:
            del self._s.published[event_id]
            del self._s.outbox[event_id]
        return len(old)

    async def select_for_replay(
        self, since: datetime | None, event_id: str | None, limit: int, after_id: int
    ) -> list[tuple[int, OutboxEntry]]:
        rows = list(enumerate(self._s.outbox.values(), start=1))
        return [
            (n, e)
            for n, e in rows
            if n > after_id
            and (since is None or e.created_at >= since)
            and (event_id is None or e.event_id == event_id)
        ][:limit]


class FakeUsers:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, account: CreatedAccount) -> None:
        if account.email in self._s.users:
            raise EmailAlreadyRegistered(account.email)
        self._s.users[account.email] = account

    async def exists(self, email: str) -> bool:
        return email in self._s.users

    async def by_email(self, email: str) -> CreatedAccount | None:
        return self._s.users.get(email)

    async def by_id(self, user_id: str) -> CreatedAccount | None:
        return next((a for a in self._s.users.values() if a.user_id == user_id), None)

    async def mark_verified(self, user_id: str) -> bool:
        account = await self.by_id(user_id)
        if account is None or account.email_verified:
            return False
        self._s.users[account.email] = replace(account, email_verified=True)
        return True


class FakeLeases:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        current = self._s.leases.get(name)
        if current and current[0] != holder and current[1] > now:
            return False
        self._s.leases[name] = (holder, until)
        return True

    async def release(self, name: str, holder: str) -> None:
        if self._s.leases.get(name, ("", None))[0] == holder:
            del self._s.leases[name]


class FakeAttemptNotices:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def sent_after(self, key: str, since: datetime) -> bool:
        sent = self._s.notices.get(key)
        return sent is not None and sent > since

    async def claim(self, key: str, now: datetime, since: datetime) -> bool:
        if await self.sent_after(key, since):
            return False
        self._s.notices[key] = now
        return True

    async def prune(self, before: datetime, limit: int) -> int:
        old = sorted((sent, key) for key, sent in self._s.notices.items() if sent < before)
        for _, key in old[:limit]:
            del self._s.notices[key]
        return len(old[:limit])


class FakeConsents:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, user_id: str, records: Sequence[ConsentRecord]) -> None:
        if records:
            self._s.consents.setdefault(user_id, []).extend(records)

    async def of_user(self, user_id: str) -> list[ConsentRecord]:
        return sorted(self._s.consents.get(user_id, []), key=lambda r: r.id)

    async def texts(self) -> dict[tuple[str, str, str], str]:
        return dict(self._s.consent_texts)

    async def remember_texts(
        self, texts: Mapping[tuple[str, str, str], str], now: datetime
    ) -> None:
        self._s.consent_texts.update(texts)


class FakeAnnounced:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def event_for(self, user_id: str) -> str | None:
        found = self._s.announced.get(user_id)
        return found[0] if found else None

    async def add(self, user_id: str, event_id: str, origin: str, at: datetime) -> None:
        if user_id in self._s.announced:
            raise AccountAlreadyAnnounced(user_id)
        self._s.announced[user_id] = (event_id, origin, at)

    async def count_by_origin(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, origin, _ in self._s.announced.values():
            counts[origin] = counts.get(origin, 0) + 1
        return counts


class FakeSightings:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add(self, sighting: Sighting) -> None:
        self._s.sightings.setdefault(sighting.account.user_id, sighting)

    async def oldest(self, limit: int) -> list[Sighting]:
        return sorted(self._s.sightings.values(), key=lambda s: s.seen_at)[:limit]

    async def remove(self, user_id: str) -> None:
        self._s.sightings.pop(user_id, None)


class FakeCheckpoints:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def get(self, name: str) -> datetime | None:
        return self._s.checkpoints.get(name)

    async def put(self, name: str, at: datetime) -> None:
        self._s.checkpoints[name] = at


class FakeTransaction:
    def __init__(self, state: _State) -> None:
        self.signups = FakeSignUps(state)
        self.outbox = FakeOutbox(state)
        self.users = FakeUsers(state)
        self.leases = FakeLeases(state)
        self.consents = FakeConsents(state)
        self.announced = FakeAnnounced(state)
        self.sightings = FakeSightings(state)
        self.checkpoints = FakeCheckpoints(state)
        self.attempt_notices = FakeAttemptNotices(state)


class ContractBroken(BaseException):
    """A work broke the unit of work's contract (see `FakeUnitOfWork`).

    A BaseException, as pytest's own outcomes are, so that no `except Exception` in the
    code under test (a relay cycle, a fallback) can swallow it and let the test pass.
    """


def _run_to_the_end(work: Work[T], tx: FakeTransaction) -> T:
    """Run `work` on `tx` to its end, never letting it suspend.

    The fake repositories never suspend, so a work that suspends awaited something other
    than its transaction: a remote call (the fake provider and publisher yield to the
    loop, as any network call does), a sleep, a lock, another task. The real unit of work
    cannot run such a work: on SQLite it drives each batch on the event loop without
    suspending (`signup.adapters.sql.sqlite_fast.run_inline`), on PostgreSQL it would
    hold the transaction (and its batch's neighbours) open across the wait.
    """
    steps = work(tx).__await__()
    try:
        awaited = steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    steps.close()
    name = getattr(work, "__qualname__", repr(work))
    raise ContractBroken(
        f"the work {name} awaited {awaited!r}, not its transaction's repositories: "
        "a unit of work may await nothing else (do the call before or after it)"
    )


class FakeUnitOfWork:
    """All-or-nothing like the real one, and as strict about its contract
    (`signup.service_layer.unit_of_work.UnitOfWork.run`):

    - **A work may run twice.** The real one commits concurrent works together; when one
      fails, the batch is rolled back and each work run again alone
      (docs/decisions/0001-group-commit.md). So here every work runs twice: the first run
      on a copy of the state that is thrown away (its exception too), the second on the
      state it then commits, or leaves as it was if it raises. A work that changes
      anything but its transaction (a counter, a list, an object it was given), or whose
      second run depends on the first, shows it in the tests of its use case.
    - **A work awaits only its transaction's repositories.** Each run must finish without
      suspending; one that suspends raises `ContractBroken` (see `_run_to_the_end`).
      Reads are held to the same rule, as the real quick reads are.
    """

    def __init__(self) -> None:
        self.state = _State()
        self.commits = 0

    async def run(self, work: Work[T]) -> T:
        with contextlib.suppress(Exception):  # the batch's failure: each then runs alone
            _run_to_the_end(work, FakeTransaction(copy.deepcopy(self.state)))
        state = copy.deepcopy(self.state)
        result = _run_to_the_end(work, FakeTransaction(state))
        self.state = state
        self.commits += 1
        return result

    async def read(self, work: Work[T], *, quick: bool = False) -> T:
        return _run_to_the_end(work, FakeTransaction(copy.deepcopy(self.state)))


class FakeIdentityProvider:
    """A remote provider whose next answers a test scripts (an exception, or None: create)."""

    name = "auth0"
    transactional = False

    def __init__(self, clock: object) -> None:
        self.accounts: dict[str, CreatedAccount] = {}
        self.script: list[BaseException | None] = []
        self.lookups_fail: BaseException | None = None
        self.calls = 0
        self._clock = clock
        self._n = 0

    def now(self) -> datetime:
        value = self._clock()  # type: ignore[operator]
        assert isinstance(value, datetime)
        return value

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        await asyncio.sleep(0)  # a remote call yields to the loop (see `_run_to_the_end`)
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, _CreateThenFail):
            self._create(applicant)
            raise step.error
        if step is not None:
            raise step
        if applicant.email in self.accounts:
            raise EmailAlreadyRegistered(applicant.email)
        return self._create(applicant)

    def _create(self, applicant: Applicant) -> CreatedAccount:
        self._n += 1
        account = CreatedAccount(
            user_id=f"auth0|{self._n:024x}",
            email=applicant.email,
            email_verified=False,
            created_at=self.now(),
            given_name=applicant.given_name,
            family_name=applicant.family_name,
            name=applicant.name,
            intent_id=applicant.intent_id,  # as Auth0 keeps it in app_metadata
        )
        self.accounts[applicant.email] = account
        return account

    async def find_by_email(self, email: str) -> list[CreatedAccount]:
        await asyncio.sleep(0)  # a remote call yields to the loop
        if self.lookups_fail is not None:
            raise self.lookups_fail
        found = self.accounts.get(email)
        return [found] if found else []

    async def close(self) -> None:
        return None


class _CreateThenFail(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def create_then_fail(error: BaseException) -> BaseException:
    """A scripted step: the account is made, then the answer is lost as `error`."""
    return _CreateThenFail(error)


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[OutboxEntry] = []
        self.down = False

    @property
    def connected(self) -> bool:
        return not self.down

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        await asyncio.sleep(0)  # a remote call yields to the loop
        if self.down:
            return PublishResult(failed={e.event_id: "broker down" for e in entries})
        self.sent.extend(entries)
        return PublishResult(confirmed=[e.event_id for e in entries])

    async def close(self) -> None:
        return None


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)
