"""Which provider account may be adopted for a sign-up's intent (issue 18, item 4).

Only one on our connection, whose created_at parses and is after the intent: an
unreadable time is not taken as "now" (which would always be after the intent).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signup.adapters.auth0.accounts import INTENT_KEY, account_from, adoptable_account
from signup.domain.commands import RegisterUser
from signup.domain.errors import OutcomeUnknown
from signup.domain.model import Applicant, SignUpStatus
from signup.service_layer.registration import RegistrationService
from signup.service_layer.sign_up_identity import CLOCK_SKEW
from signup.testing.fakes import FakeIdentityProvider, FakeUnitOfWork, ManualClock

OURS = "Username-Password-Authentication"
ANSWERED_AT = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)


def user(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_id": "auth0|6762aa",
        "email": "ada@example.com",
        "created_at": "2026-12-05T03:59:59.120Z",
        "identities": [{"connection": OURS, "provider": "auth0", "isSocial": False}],
        "app_metadata": {INTENT_KEY: "intent-1"},
    }
    data.update(changes)
    return data


def adoptable(data: dict[str, Any]) -> bool:
    return adoptable_account(data, fallback_email="ada@example.com", connection=OURS) is not None


def test_an_account_on_our_connection_with_a_readable_time_is_adoptable() -> None:
    account = adoptable_account(user(), fallback_email="x@example.com", connection=OURS)
    assert account is not None
    assert account.created_at == datetime(2026, 12, 5, 3, 59, 59, 120_000, tzinfo=UTC)
    assert (account.intent_id, account.email) == ("intent-1", "ada@example.com")


@pytest.mark.parametrize("created_at", ["yesterday", "", None, 1733371199, "2026-13-01T00:00Z"])
def test_an_unreadable_created_at_is_not_adoptable(created_at: object) -> None:
    assert not adoptable(user(created_at=created_at))


def test_a_missing_created_at_is_not_adoptable() -> None:
    data = user()
    del data["created_at"]
    assert not adoptable(data)


@pytest.mark.parametrize(
    "identities",
    [
        [{"connection": "google-oauth2", "provider": "google-oauth2", "isSocial": True}],
        [{"connection": "Other-Database", "provider": "auth0"}],
        [],
        None,
        "Username-Password-Authentication",
        ["Username-Password-Authentication"],
    ],
)
def test_an_account_not_on_our_connection_is_not_adoptable(identities: object) -> None:
    assert not adoptable(user(identities=identities))


def test_an_account_linked_to_ours_among_others_is_adoptable() -> None:
    social = {"connection": "google-oauth2", "provider": "google-oauth2", "isSocial": True}
    assert adoptable(user(identities=[social, {"connection": OURS, "provider": "auth0"}]))


def test_our_own_creates_answer_takes_its_time_when_created_at_is_unreadable() -> None:
    # Nothing is adopted from a create's answer: the account is ours, the event needs a
    # time, and the answer's is the best there is.
    data = user(created_at="not a time")
    account = account_from(data, fallback_email="ada@example.com", answered_at=ANSWERED_AT)
    assert account.created_at == ANSWERED_AT
    readable = account_from(user(), fallback_email="ada@example.com", answered_at=ANSWERED_AT)
    assert readable.created_at < ANSWERED_AT


# ---- the intent's time, in the service layer -------------------------------------------


async def lost_answer(
    offset: timedelta,
) -> tuple[RegistrationService, FakeUnitOfWork, ManualClock, dict[str, int]]:
    """A sign-up whose create timed out before the provider acted; then an account that
    carries its intent turns up, made `offset` from the intent (negative: before it)."""
    clock = ManualClock(datetime(2026, 12, 5, 4, 0, tzinfo=UTC))
    uow, provider = FakeUnitOfWork(), FakeIdentityProvider(clock)
    service = RegistrationService(uow=uow, provider=provider, clock=clock, source="urn:test")
    provider.script = [OutcomeUnknown("timeout before the provider acted")]
    with pytest.raises(OutcomeUnknown):
        await service.register(
            RegisterUser(Applicant("ada@example.com", "Ada"), "violet tractor anthem")
        )
    [signup] = uow.state.signups.values()
    made = provider._create(Applicant("ada@example.com", "Ada", intent_id=signup.id))
    provider.accounts["ada@example.com"] = replace(made, created_at=signup.requested_at + offset)
    clock.advance(300)
    report = await service.reconcile(timedelta(seconds=120))
    return service, uow, clock, report


async def test_an_account_that_carries_the_intent_but_predates_it_is_not_adopted() -> None:
    _, uow, _, report = await lost_answer(-timedelta(hours=1))
    assert report["abandoned"] == 1 and report["completed"] == 0
    assert not uow.state.outbox
    [signup] = uow.state.signups.values()
    assert signup.status is SignUpStatus.ABANDONED


async def test_the_providers_clock_may_trail_ours_by_the_allowed_skew() -> None:
    _, uow, _, report = await lost_answer(-CLOCK_SKEW + timedelta(milliseconds=1))
    assert report["completed"] == 1
    assert len(uow.state.outbox) == 1
