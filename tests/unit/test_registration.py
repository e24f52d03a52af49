"""The sign-up use case with fakes: exactly one event per created account, whatever happens."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from signup.bootstrap import decoy_key
from signup.domain.commands import RegisterUser
from signup.domain.errors import (
    EmailAlreadyRegistered,
    FieldRejected,
    IdempotencyKeyReused,
    OutcomeUnknown,
    ProviderUnavailable,
    RequestInProgress,
)
from signup.domain.events import SignupAttempted, UserRegistered
from signup.domain.model import Applicant, CreatedAccount, SignUpStatus
from signup.service_layer.registration import RegistrationService, time_ordered_id
from signup.settings import Settings
from signup.testing.fakes import (
    FakeIdentityProvider,
    FakeUnitOfWork,
    ManualClock,
    create_then_fail,
)

PASSWORD = "violet tractor anthem"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def provider(clock: ManualClock) -> FakeIdentityProvider:
    return FakeIdentityProvider(clock)


@pytest.fixture
def service(
    uow: FakeUnitOfWork, provider: FakeIdentityProvider, clock: ManualClock
) -> RegistrationService:
    return RegistrationService(uow=uow, provider=provider, clock=clock, source="urn:signup:test")


def command(
    email: str = "ada@example.com", key: str | None = None, given: str | None = "Ada"
) -> RegisterUser:
    return RegisterUser(Applicant(email, given, "Lovelace"), PASSWORD, key)


def events(uow: FakeUnitOfWork) -> list[UserRegistered]:
    """The `user.new` events in the outbox."""
    return [
        UserRegistered.from_json(e.payload)
        for e in uow.state.outbox.values()
        if e.event_type == "user.new"
    ]


def notices(uow: FakeUnitOfWork) -> list[SignupAttempted]:
    """The `user.signup_attempted` events in the outbox."""
    return [
        SignupAttempted.from_json(e.payload)
        for e in uow.state.outbox.values()
        if e.routing_key == "user.signup_attempted"
    ]


async def test_a_created_account_writes_one_event_in_the_same_transaction(
    service: RegistrationService, uow: FakeUnitOfWork
) -> None:
    result = await service.register(command())
    [event] = events(uow)
    assert event.data.user_id == result.user_id
    assert event.data.email == "ada@example.com"
    assert event.data.name == "Ada Lovelace"
    assert event.data.identity_provider == "auth0"
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.CREATED and signup.event_id == event.id
    assert PASSWORD not in repr(uow.state)


async def test_existing_email_is_409_and_no_event(
    service: RegistrationService, uow: FakeUnitOfWork
) -> None:
    await service.register(command())
    with pytest.raises(EmailAlreadyRegistered):
        await service.register(command())
    assert len(events(uow)) == 1


async def test_hidden_mode_answers_alike_and_sends_no_second_event(
    uow: FakeUnitOfWork, provider: FakeIdentityProvider, clock: ManualClock
) -> None:
    service = RegistrationService(
        uow=uow, provider=provider, clock=clock, source="s", hide_existing=True
    )
    first = await service.register(command())
    second = await service.register(command())
    assert second.email == first.email and second.user_id != first.user_id
    assert second.user_id.startswith("auth0|")
    assert len(events(uow)) == 1


async def test_hidden_mode_tells_the_owner_at_most_once_an_hour(
    uow: FakeUnitOfWork, provider: FakeIdentityProvider, clock: ManualClock
) -> None:
    service = RegistrationService(
        uow=uow, provider=provider, clock=clock, source="s", hide_existing=True
    )
    owner = await service.register(command())
    assert notices(uow) == []
    clock.advance(5)
    attempt = command(given="Mallory")
    await service.register(replace(attempt, applicant=replace(attempt.applicant, language="de")))
    [notice] = notices(uow)
    assert notice.type == notice.routing_key == "user.signup_attempted"
    assert notice.data.user_id == owner.user_id and notice.data.email == "ada@example.com"
    assert notice.data.attempted_at == clock()
    assert "Mallory" not in notice.to_json().decode(), "nothing typed in the attempt"
    # The attempt's language (the page's, one of the site's), for the notice's words.
    assert notice.as_dict()["data"] == {
        "user_id": owner.user_id,
        "email": "ada@example.com",
        "attempted_at": notice.as_dict()["time"],
        "language": "de",
    }
    for _ in range(3):  # within the hour: answered alike, nothing more written
        clock.advance(600)
        await service.register(command())
    assert len(notices(uow)) == 1
    clock.advance(1800)  # an hour and a bit after the notice
    await service.register(command())
    assert len(notices(uow)) == 2
    assert len(events(uow)) == 1


async def test_without_hidden_mode_no_owner_is_told(
    service: RegistrationService, uow: FakeUnitOfWork
) -> None:
    await service.register(command())
    with pytest.raises(EmailAlreadyRegistered):
        await service.register(command())
    assert notices(uow) == []


async def test_provider_refusal_is_kept_and_no_event(
    service: RegistrationService, uow: FakeUnitOfWork, provider: FakeIdentityProvider
) -> None:
    provider.script = [FieldRejected("password", "too weak for the tenant")]
    with pytest.raises(FieldRejected) as caught:
        await service.register(command())
    assert caught.value.field == "password"
    assert not events(uow)
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.REJECTED


async def test_unavailable_provider_abandons_and_frees_the_key(
    service: RegistrationService, uow: FakeUnitOfWork, provider: FakeIdentityProvider
) -> None:
    provider.script = [ProviderUnavailable("down")]
    with pytest.raises(ProviderUnavailable):
        await service.register(command(key="k1"))
    result = await service.register(command(key="k1"))  # the retry starts afresh
    assert result.user_id in {a.user_id for a in provider.accounts.values()}
    assert len(events(uow)) == 1


async def test_lost_answer_stays_pending_and_reconcile_completes_it_once(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [create_then_fail(OutcomeUnknown("read timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    assert not events(uow)
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.PENDING
    clock.advance(300)
    assert await service.reconcile(timedelta(seconds=120)) == {
        "completed": 1,
        "abandoned": 0,
        "failed": 0,
    }
    assert await service.reconcile(timedelta(seconds=120)) == {
        "completed": 0,
        "abandoned": 0,
        "failed": 0,
    }
    [event] = events(uow)
    assert event.data.user_id == provider.accounts["ada@example.com"].user_id


async def test_reconcile_abandons_when_nothing_was_created(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [OutcomeUnknown("timeout before the provider acted")]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(10)
    assert (await service.reconcile(timedelta(seconds=120)))["abandoned"] == 0, "too young"
    clock.advance(300)
    assert await service.reconcile(timedelta(seconds=120)) == {
        "completed": 0,
        "abandoned": 1,
        "failed": 0,
    }
    assert not events(uow)


async def test_reconcile_leaves_pending_when_the_provider_cannot_be_asked(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [create_then_fail(OutcomeUnknown("timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(300)
    provider.lookups_fail = ProviderUnavailable("down")
    assert (await service.reconcile(timedelta(seconds=120)))["failed"] == 1
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.PENDING


async def test_a_retry_without_the_key_is_another_request_and_gets_409(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    """Nothing but a key ties a retry to the attempt whose answer was lost: the password
    is in no fingerprint, so "the same person pressing again" cannot be told from a
    stranger. The account is the first attempt's, and reconciliation gives it its event."""
    provider.script = [create_then_fail(OutcomeUnknown("timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(2)
    with pytest.raises(EmailAlreadyRegistered):
        await service.register(command())  # the person presses the button again
    assert not events(uow)
    clock.advance(300)
    assert (await service.reconcile(timedelta(seconds=120)))["completed"] == 1
    [event] = events(uow)
    assert event.data.user_id == provider.accounts["ada@example.com"].user_id


async def test_a_409_completes_an_earlier_attempt_no_longer_in_flight_but_answers_409(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [create_then_fail(OutcomeUnknown("timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(60)  # past in-flight: its own request will not complete it any more
    with pytest.raises(EmailAlreadyRegistered):
        await service.register(command())
    [event] = events(uow)
    assert event.data.user_id == provider.accounts["ada@example.com"].user_id
    assert sorted(s.status for s in uow.state.signups.values()) == [
        SignUpStatus.CREATED,
        SignUpStatus.EXISTING,
    ]


@pytest.mark.parametrize("hide", [False, True])
async def test_a_stranger_a_moment_ahead_never_hands_over_the_account(
    uow: FakeUnitOfWork, provider: FakeIdentityProvider, clock: ManualClock, hide: bool
) -> None:
    """Issue 16, item 3: the attacker's creation is in flight when the victim's 409 comes."""
    service = RegistrationService(
        uow=uow, provider=provider, clock=clock, source="s", hide_existing=hide
    )
    provider.script = [create_then_fail(OutcomeUnknown("still in flight"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())  # the attacker's, its answer not back yet
    attacker = provider.accounts["ada@example.com"]
    clock.advance(0.001)
    if hide:
        victim = await service.register(command())
        assert victim.user_id != attacker.user_id and victim.user_id.startswith("auth0|")
    else:
        with pytest.raises(EmailAlreadyRegistered):
            await service.register(command())
    assert provider.calls == 2 and not events(uow)


async def test_the_same_request_takes_its_account_when_it_turns_up_late(
    uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    """A keyed retry whose earlier attempt reconciliation found nothing for, then Auth0
    made the account after all: the same key and body, so the account is this request's."""

    class ArrivesLate(FakeIdentityProvider):
        late: Applicant | None = None

        async def find_by_email(self, email: str) -> list[CreatedAccount]:
            found = await super().find_by_email(email)
            if self.late is not None:
                self._create(self.late)
                self.late = None
            return found

    provider = ArrivesLate(clock)
    service = RegistrationService(uow=uow, provider=provider, clock=clock, source="s")
    provider.script = [OutcomeUnknown("timeout")]
    with pytest.raises(OutcomeUnknown):
        await service.register(command(key="key-9"))
    [first] = uow.state.signups.values()
    provider.late = replace(command().applicant, intent_id=first.id)
    clock.advance(60)
    result = await service.register(command(key="key-9"))
    [event] = events(uow)
    assert result.user_id == event.data.user_id == provider.accounts["ada@example.com"].user_id
    again = await service.register(command(key="key-9"))
    assert (again.user_id, again.replayed) == (result.user_id, True)


async def test_reconcile_adopts_only_the_account_that_carries_the_intent(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [OutcomeUnknown("timeout before the provider acted")]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(1)
    provider._create(Applicant("ada@example.com", intent_id="someone-else"))  # after ours
    clock.advance(300)
    assert (await service.reconcile(timedelta(seconds=120)))["abandoned"] == 1
    assert not events(uow)


async def test_a_409_for_an_account_made_long_before_is_not_ours(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider._create(Applicant("ada@example.com"))  # made elsewhere, a day ago
    clock.advance(86_400)
    provider.script = [OutcomeUnknown("timeout before the provider acted")]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    with pytest.raises(EmailAlreadyRegistered):
        await service.register(command())
    assert not events(uow)


async def test_idempotency_key_replays_the_first_answer(
    service: RegistrationService, uow: FakeUnitOfWork, provider: FakeIdentityProvider
) -> None:
    first = await service.register(command(key="key-1"))
    again = await service.register(command(key="key-1"))
    assert (again.user_id, again.replayed) == (first.user_id, True)
    assert provider.calls == 1 and len(events(uow)) == 1
    with pytest.raises(IdempotencyKeyReused):
        await service.register(command(key="key-1", given="Someone else"))


async def test_idempotency_key_replays_errors_too(
    service: RegistrationService, provider: FakeIdentityProvider
) -> None:
    provider.script = [FieldRejected("password", "weak")]
    for _ in range(2):
        with pytest.raises(FieldRejected):
            await service.register(command(key="key-2"))
    assert provider.calls == 1


async def test_a_key_still_in_flight_is_reported(
    service: RegistrationService, provider: FakeIdentityProvider, clock: ManualClock
) -> None:
    provider.script = [create_then_fail(OutcomeUnknown("timeout"))]
    with pytest.raises(OutcomeUnknown):
        await service.register(command(key="key-3"))
    with pytest.raises(RequestInProgress):
        await service.register(command(key="key-3"))
    clock.advance(60)  # past in-flight: the replay settles the earlier attempt itself
    result = await service.register(command(key="key-3"))
    assert result.user_id == provider.accounts["ada@example.com"].user_id
    assert provider.calls == 1


async def test_an_account_made_after_reconcile_gave_up_gets_its_event_on_retry(
    service: RegistrationService,
    uow: FakeUnitOfWork,
    provider: FakeIdentityProvider,
    clock: ManualClock,
) -> None:
    provider.script = [OutcomeUnknown("timeout before the provider acted")]
    with pytest.raises(OutcomeUnknown):
        await service.register(command())
    clock.advance(300)
    assert (await service.reconcile(timedelta(seconds=120)))["abandoned"] == 1
    [first] = uow.state.signups.values()
    late = Applicant("ada@example.com", "Ada", "Lovelace", intent_id=first.id)
    provider._create(late)  # the late creation, marked by the attempt that asked for it
    clock.advance(5)
    with pytest.raises(EmailAlreadyRegistered):  # no key: not provably the same request
        await service.register(command())
    [event] = events(uow)
    assert event.data.user_id == provider.accounts["ada@example.com"].user_id


def test_ids_are_uuid7_and_sort_in_the_order_they_were_made() -> None:
    # Index locality: a new sign-up's row and its event go to the end of their indexes.
    made = [time_ordered_id() for _ in range(2_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert {uuid.UUID(i).version for i in made} == {7}


def test_the_honeypot_decoy_is_stable_for_a_key_across_processes_sharing_a_secret(
    uow: FakeUnitOfWork, provider: FakeIdentityProvider, clock: ManualClock
) -> None:
    settings = Settings(_env_file=None, challenge="pow", challenge_key="k" * 32)  # type: ignore[call-arg]

    def process(key: bytes) -> RegistrationService:
        return RegistrationService(
            uow=uow, provider=provider, clock=clock, source="urn:test", decoy_key=key
        )

    one, two = process(decoy_key(settings)), process(decoy_key(settings))
    stranger = process(decoy_key(Settings(_env_file=None)))  # type: ignore[call-arg]
    first = one.decoy("bot@example.com", "key-1")
    assert two.decoy("bot@example.com", "key-1") == first
    assert one.decoy("bot@example.com", "key-2") != first
    assert stranger.decoy("bot@example.com", "key-1") != first  # without the secret
    assert one.decoy("bot@example.com") != one.decoy("bot@example.com")  # no key: fresh
    assert (
        first.user_id.startswith(f"{provider.name}|")
        and len(first.user_id) == len(provider.name) + 25
    )
    assert "k" * 32 not in repr(one)
