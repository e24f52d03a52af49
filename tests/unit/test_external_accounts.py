"""Accounts made outside the form, with fakes: one `user.new` per account, ever, whichever
path (the form, Auth0's event, the sweep) sees it first, and the form's event wins the race."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from signup.domain.events import UserRegistered
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.external_accounts import ExternalAccounts
from signup.service_layer.registration import RegistrationService
from signup.service_layer.unit_of_work import Transaction
from signup.testing.fakes import FakeIdentityProvider, FakeUnitOfWork, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def registration(uow: FakeUnitOfWork, clock: ManualClock) -> RegistrationService:
    return RegistrationService(
        uow=uow, provider=FakeIdentityProvider(clock), clock=clock, source="urn:signup:test"
    )


@pytest.fixture
def accounts(
    uow: FakeUnitOfWork, clock: ManualClock, registration: RegistrationService
) -> ExternalAccounts:
    return ExternalAccounts(
        uow=uow, clock=clock, source="urn:signup:test", complete_signup=registration.complete
    )


def social(user_id: str = "google-oauth2|1", intent: str | None = None) -> CreatedAccount:
    return CreatedAccount(
        user_id=user_id,
        email="grace@example.com",
        email_verified=True,
        created_at=datetime(2026, 12, 5, 9, 59, tzinfo=UTC),
        given_name="Grace",
        family_name="Hopper",
        name="Grace Hopper",
        intent_id=intent,
        connection="google-oauth2",
        is_social=True,
    )


def events(uow: FakeUnitOfWork) -> list[UserRegistered]:
    return [UserRegistered.from_json(e.payload) for e in uow.state.outbox.values()]


async def pending_signup(uow: FakeUnitOfWork, clock: ManualClock, given: str | None) -> SignUp:
    signup = SignUp(
        id="0193a5c4-0000-7000-8000-000000000001",
        applicant=Applicant("ada@example.com", given, "Lovelace"),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=clock(),
    )

    async def add(tx: Transaction) -> None:
        await tx.signups.add(signup)

    await uow.run(add)
    return signup


def form_account(signup: SignUp, given: str | None = "Profile") -> CreatedAccount:
    return CreatedAccount(
        user_id="auth0|form1",
        email="ada@example.com",
        email_verified=False,
        created_at=datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        given_name=given,
        family_name="Lovelace",
        intent_id=signup.id,
        connection="Username-Password-Authentication",
    )


async def test_a_social_account_gets_one_event_however_often_and_by_whichever_path(
    accounts: ExternalAccounts, uow: FakeUnitOfWork
) -> None:
    assert await accounts.announce(social(), "auth0-event", "evt_1") == "announced"
    assert await accounts.announce(social(), "auth0-event", "evt_1") == "repeat"
    assert await accounts.announce(social(), "sweep") == "repeat"
    assert await accounts.announce(social(), "auth0-event", "evt_2") == "repeat"
    [event] = events(uow)
    assert event.data.user_id == "google-oauth2|1"
    assert (event.data.connection, event.data.is_social, event.data.origin) == (
        "google-oauth2",
        True,
        "auth0-event",
    )
    assert event.data.given_name == "Grace" and event.data.name == "Grace Hopper"
    assert event.auth0eventid == "evt_1" and event.id != "evt_1"
    assert uow.state.announced["google-oauth2|1"][:2] == (event.id, "auth0-event")


async def test_the_extension_attribute_is_absent_when_no_auth0_event_told_us(
    accounts: ExternalAccounts, uow: FakeUnitOfWork
) -> None:
    await accounts.announce(social(), "sweep")
    [entry] = uow.state.outbox.values()
    assert b"auth0eventid" not in entry.payload
    assert b'"origin":"sweep"' in entry.payload


async def test_two_accounts_get_two_events_with_their_own_ids(
    accounts: ExternalAccounts, uow: FakeUnitOfWork
) -> None:
    await accounts.announce(social("google-oauth2|1"), "auth0-event", "evt_1")
    await accounts.announce(social("github|2"), "sweep")
    assert len({e.id for e in events(uow)}) == 2


async def test_the_form_in_flight_wins_the_race_and_keeps_its_names(
    accounts: ExternalAccounts,
    registration: RegistrationService,
    uow: FakeUnitOfWork,
    clock: ManualClock,
) -> None:
    signup = await pending_signup(uow, clock, given="Ada")
    account = form_account(signup, given=None)
    # Auth0 made the account; its event comes before the form's request has its answer.
    assert await accounts.announce(account, "auth0-event", "evt_9") == "deferred"
    assert events(uow) == []
    assert account.user_id in uow.state.sightings  # durable: the 204 may go
    await registration.complete(signup, account)  # the form's request gets Auth0's 201
    assert await accounts.announce(account, "auth0-event", "evt_9") == "repeat"
    report = await accounts.settle_sightings()
    assert report["repeat"] == 1 and uow.state.sightings == {}
    [event] = events(uow)
    assert event.data.origin == "form" and event.data.given_name == "Ada"
    assert event.auth0eventid is None
    assert uow.state.signups[signup.id].status is SignUpStatus.CREATED


async def test_a_sighting_of_a_sign_up_given_up_for_lost_completes_it_the_forms_way(
    accounts: ExternalAccounts, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    signup = await pending_signup(uow, clock, given="Ada")
    account = form_account(signup)
    assert await accounts.announce(account, "auth0-event", "evt_9") == "deferred"
    assert await accounts.settle_sightings() == {
        "announced": 0,
        "repeat": 0,
        "deferred": 1,
        "form": 0,
    }

    async def abandon(tx: Transaction) -> None:
        await tx.signups.settle(signup.abandoned(), expected=SignUpStatus.PENDING)

    await uow.run(abandon)  # reconciliation did not find the account (yet)
    report = await accounts.settle_sightings()
    assert report["form"] == 1 and uow.state.sightings == {}
    [event] = events(uow)
    assert event.data.user_id == "auth0|form1" and event.data.origin == "form"
    assert event.data.given_name == "Ada"  # the form's, not the profile's
    assert uow.state.signups[signup.id].status is SignUpStatus.CREATED
    assert await accounts.settle_sightings() == {
        "announced": 0,
        "repeat": 0,
        "deferred": 0,
        "form": 0,
    }


async def test_an_abandoned_sign_ups_account_seen_directly_completes_it(
    accounts: ExternalAccounts, uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    signup = await pending_signup(uow, clock, given="Ada")

    async def abandon(tx: Transaction) -> None:
        await tx.signups.settle(signup.abandoned(), expected=SignUpStatus.PENDING)

    await uow.run(abandon)
    assert await accounts.announce(form_account(signup), "sweep") == "form"
    assert await accounts.announce(form_account(signup), "auth0-event", "e") == "repeat"
    [event] = events(uow)
    assert event.data.origin == "form" and uow.state.sightings == {}


async def test_an_account_whose_sign_up_is_gone_is_announced_as_seen(
    accounts: ExternalAccounts, uow: FakeUnitOfWork
) -> None:
    assert await accounts.announce(social(intent="pruned-long-ago"), "sweep") == "announced"
    [event] = events(uow)
    assert event.data.origin == "sweep"


async def test_the_form_first_then_auth0s_event_is_a_repeat(
    registration: RegistrationService, accounts: ExternalAccounts, uow: FakeUnitOfWork
) -> None:
    from signup.domain.commands import RegisterUser

    made = await registration.register(
        RegisterUser(Applicant("ada@example.com", "Ada", None), "violet tractor anthem")
    )
    [event] = events(uow)
    assert event.data.origin == "form" and event.data.is_social is False
    seen = CreatedAccount(
        user_id=made.user_id,
        email="ada@example.com",
        email_verified=False,
        created_at=event.data.created_at,
    )
    assert await accounts.announce(seen, "auth0-event", "evt_1") == "repeat"
    assert await accounts.announce(seen, "sweep") == "repeat"
    assert len(events(uow)) == 1


async def test_an_account_announced_first_by_its_event_is_not_announced_by_the_form(
    registration: RegistrationService,
    accounts: ExternalAccounts,
    uow: FakeUnitOfWork,
    clock: ManualClock,
) -> None:
    # Its sign-up was refused by then (say), so the event announced it as seen; the form's
    # completion coming after must not add a second one.
    signup = await pending_signup(uow, clock, given="Ada")
    account = form_account(signup)

    async def refuse(tx: Transaction) -> None:
        await tx.signups.settle(signup.rejected("body", "no"), expected=SignUpStatus.PENDING)

    await uow.run(refuse)
    assert await accounts.announce(account, "auth0-event", "e1") == "announced"
    [only] = events(uow)
    other = SignUp(
        id="0193a5c4-0000-7000-8000-000000000002",
        applicant=Applicant("ada@example.com", "Ada", "Lovelace"),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=clock(),
    )

    async def add(tx: Transaction) -> None:
        await tx.signups.add(other)

    await uow.run(add)
    await registration.complete(other, account)
    assert events(uow) == [only]
    assert uow.state.signups[other.id].event_id == only.id
