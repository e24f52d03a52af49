"""A retry with the same Idempotency-Key settles a sign-up no live request works on, at once.

Without a live worker (its answer lost, its process killed) a retry asks the provider
whether the account this intent made exists: then it completes the sign-up (201, the
same user id, one event), else it tries again afresh. While its request still runs, a
retry is 409 `request-in-progress`. A reconciliation running at the same moment never
makes it settle twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from signup.domain.commands import RegisterUser
from signup.domain.errors import OutcomeUnknown, ProviderUnavailable, RequestInProgress
from signup.domain.events import UserRegistered
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.registration import RegistrationService, fingerprint
from signup.service_layer.unit_of_work import Transaction
from signup.testing.fakes import (
    FakeIdentityProvider,
    FakeUnitOfWork,
    ManualClock,
    create_then_fail,
)

PASSWORD = "violet tractor anthem"
KEY = "retry-key"


class FakeLiveness:
    """Instances alive until a test says one died (as a `kill -9` would)."""

    def __init__(self, instance: str = "this-instance") -> None:
        self.instance = instance
        self.running = {instance}

    async def hold(self) -> str:
        return self.instance

    async def alive(self, instance: str) -> bool:
        return instance in self.running

    async def close(self) -> None:
        self.running.discard(self.instance)


class HeldProvider(FakeIdentityProvider):
    """Its next create waits until the test lets it go (a request in flight)."""

    def __init__(self, clock: object) -> None:
        super().__init__(clock)
        self.called = asyncio.Event()
        self.go = asyncio.Event()
        self.hold_next = False

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        if self.hold_next:
            self.hold_next = False
            self.called.set()
            await self.go.wait()
        return await super().create_user(applicant, password)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 5, 4, 0, tzinfo=UTC))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def provider(clock: ManualClock) -> HeldProvider:
    return HeldProvider(clock)


@pytest.fixture
def liveness() -> FakeLiveness:
    return FakeLiveness()


@pytest.fixture
def service(
    uow: FakeUnitOfWork, provider: HeldProvider, clock: ManualClock, liveness: FakeLiveness
) -> RegistrationService:
    return RegistrationService(
        uow=uow, provider=provider, clock=clock, source="urn:signup:test", liveness=liveness
    )


def command(key: str | None = KEY) -> RegisterUser:
    return RegisterUser(Applicant("ada@example.com", "Ada", "Lovelace"), PASSWORD, key)


def events(uow: FakeUnitOfWork) -> list[UserRegistered]:
    return [UserRegistered.from_json(e.payload) for e in uow.state.outbox.values()]


async def left_by_a_dead_instance(uow: FakeUnitOfWork, clock: ManualClock) -> SignUp:
    """The intent a killed process wrote: pending, its worker gone, its key kept."""
    cmd = command()
    signup = SignUp(
        id="0193a0b0-0000-7000-8000-000000000001",
        applicant=cmd.applicant,
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=clock(),
        idempotency_key=KEY,
        fingerprint=fingerprint(cmd.applicant),
    )

    async def add(tx: Transaction) -> None:
        await tx.signups.add(signup, worked_by="killed-instance")

    await uow.run(add)
    return signup


async def test_a_retry_after_a_lost_answer_settles_at_once(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider
) -> None:
    provider.script = [create_then_fail(OutcomeUnknown("read timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.PENDING
    assert uow.state.workers[signup.id] is None, "the ended request still claims it"
    # No time passes: the retry does not wait for the request's time-out to age.
    answer = await service.register(command())
    assert answer.user_id == provider.accounts["ada@example.com"].user_id
    assert provider.calls == 1, "the account existed: nothing is created twice"
    [event] = events(uow)
    assert event.data.user_id == answer.user_id
    assert (await service.register(command())).user_id == answer.user_id
    assert len(events(uow)) == 1


async def test_a_retry_while_its_request_runs_is_in_progress_then_replays_its_answer(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider
) -> None:
    provider.hold_next = True
    first = asyncio.create_task(service.register(command()))
    await provider.called.wait()
    with pytest.raises(RequestInProgress):
        await service.register(command())
    assert provider.calls == 0 and not events(uow)
    provider.go.set()
    answer = await first
    assert (await service.register(command())).user_id == answer.user_id
    assert len(events(uow)) == 1


async def test_a_cancelled_request_leaves_its_sign_up_to_the_next_retry(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider
) -> None:
    provider.hold_next = True
    first = asyncio.create_task(service.register(command()))
    await provider.called.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.PENDING and uow.state.workers[signup.id] is None
    answer = await service.register(command())  # nothing was made: created afresh
    assert answer.user_id == provider.accounts["ada@example.com"].user_id
    assert len(events(uow)) == 1


async def test_a_retry_completes_what_a_killed_instance_created(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider, clock: ManualClock
) -> None:
    signup = await left_by_a_dead_instance(uow, clock)
    made = provider._create(
        Applicant("ada@example.com", "Ada", "Lovelace", intent_id=signup.id)
    )  # Auth0 made it; the process died before it heard
    answer = await service.register(command())
    assert answer.user_id == made.user_id
    assert provider.calls == 0
    assert uow.state.signups[signup.id].status is SignUpStatus.CREATED
    [event] = events(uow)
    assert event.data.user_id == made.user_id


async def test_a_retry_tries_again_what_a_killed_instance_never_sent(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider, clock: ManualClock
) -> None:
    signup = await left_by_a_dead_instance(uow, clock)
    answer = await service.register(command())
    assert provider.calls == 1
    assert answer.user_id == provider.accounts["ada@example.com"].user_id
    assert uow.state.signups[signup.id].status is SignUpStatus.ABANDONED
    [event] = events(uow)
    assert event.data.user_id == answer.user_id


async def test_a_live_instance_still_working_keeps_its_sign_up(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: HeldProvider,
    clock: ManualClock,
    liveness: FakeLiveness,
) -> None:
    signup = await left_by_a_dead_instance(uow, clock)
    liveness.running.add("killed-instance")  # it was not killed after all: another process
    clock.advance(3600)  # however old: a live worker's request ends by itself
    with pytest.raises(RequestInProgress):
        await service.register(command())
    assert uow.state.signups[signup.id].status is SignUpStatus.PENDING
    assert provider.calls == 0


async def test_a_retry_and_a_reconciliation_at_once_make_one_event(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider, clock: ManualClock
) -> None:
    signup = await left_by_a_dead_instance(uow, clock)
    provider._create(Applicant("ada@example.com", "Ada", "Lovelace", intent_id=signup.id))
    answer, report = await asyncio.gather(
        service.register(command()), service.reconcile(timedelta(0))
    )
    assert answer.user_id == provider.accounts["ada@example.com"].user_id
    assert report["abandoned"] == 0
    [event] = events(uow)
    assert event.data.user_id == answer.user_id


async def test_a_retry_that_cannot_ask_the_provider_is_503_and_keeps_the_sign_up(
    service: RegistrationService, uow: FakeUnitOfWork, provider: HeldProvider, clock: ManualClock
) -> None:
    signup = await left_by_a_dead_instance(uow, clock)
    provider.lookups_fail = ProviderUnavailable("lookup refused", retry_after=2)
    with pytest.raises(ProviderUnavailable):
        await service.register(command())
    assert uow.state.signups[signup.id].status is SignUpStatus.PENDING
    assert provider.calls == 0
    provider.lookups_fail = None
    assert (await service.register(command())).user_id
    assert len(events(uow)) == 1
