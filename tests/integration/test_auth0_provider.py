"""Auth0IdentityProvider against the local stand-in over real HTTP (no request mocking)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from signup.adapters.auth0 import Auth0IdentityProvider
from signup.domain.errors import (
    EmailAlreadyRegistered,
    FieldRejected,
    OutcomeUnknown,
    ProviderUnavailable,
)
from signup.domain.form import ConsentRecord
from signup.domain.model import Applicant
from signup.settings import Settings
from signup.testing.auth0_standin import Auth0Standin, free_port, running_standin
from signup.testing.clock import ManualClock

PASSWORD = "Tr0ub4dour&3-horse"
TIMEOUT = 0.5


def make_provider(
    standin: Auth0Standin, *, base_url: str | None = None, **overrides: Any
) -> Auth0IdentityProvider:
    options: dict[str, Any] = {
        "domain": standin.domain,
        "base_url": base_url or standin.url,
        "client_id": standin.client_id,
        "client_secret": SecretStr(standin.client_secret),
        "connection": standin.connection,
        "timeout_seconds": TIMEOUT,
        "queue_deadline_seconds": 3.0,
    }
    options.update(overrides)
    return Auth0IdentityProvider(**options)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def standin(clock: ManualClock) -> AsyncIterator[Auth0Standin]:
    """The stand-in's rate limit runs on `clock`: its bucket refills when the clock moves."""
    async with running_standin(clock=clock.monotonic, wall_clock=clock.time) as s:
        yield s


@pytest.fixture
async def provider(standin: Auth0Standin) -> AsyncIterator[Auth0IdentityProvider]:
    p = make_provider(standin)
    yield p
    await p.close()


@pytest.fixture
async def clocked(
    standin: Auth0Standin, clock: ManualClock
) -> AsyncIterator[Auth0IdentityProvider]:
    """A provider whose token cache and rate gate read `clock`: time passes when told."""
    p = make_provider(standin, clock=clock)
    yield p
    await p.close()


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.002)


def assert_no_password(exc: BaseException, password: str = PASSWORD) -> None:
    assert password not in str(exc)
    assert password not in repr(exc)
    assert password not in repr(exc.args)


ADA = Applicant("ada@example.com", "Ada", "Lovelace")


# -- created -----------------------------------------------------------------------------


async def test_created_account_fields_are_parsed(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    account = await provider.create_user(ADA, PASSWORD)

    assert account.user_id.startswith("auth0|")
    assert len(account.user_id) == len("auth0|") + 24
    assert account.email == "ada@example.com"
    assert account.email_verified is False
    assert isinstance(account.created_at, datetime)
    assert account.created_at.tzinfo is not None
    assert (account.given_name, account.family_name, account.name) == (
        "Ada",
        "Lovelace",
        "Ada Lovelace",
    )
    stored = standin.state.users[account.user_id]
    assert stored["given_name"] == "Ada"
    assert stored["identities"][0]["connection"] == standin.connection
    assert provider.name == "auth0"
    assert provider.transactional is False


async def test_the_form_s_fields_and_consents_go_to_user_metadata(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    record = ConsentRecord(
        "terms", "2026-12-01", True, datetime(2026, 12, 5, tzinfo=UTC), "de", "ab" * 32
    )
    applicant = Applicant("lin@example.com", fields=(("role", "developer"),), consents=(record,))
    account = await provider.create_user(applicant, PASSWORD)

    expected = {"fields": {"role": "developer"}, "consents": [record.as_data()]}
    assert standin.state.users[account.user_id]["user_metadata"] == expected
    assert account.user_metadata == expected
    # Without a form nothing is sent: the stand-in keeps its empty default.
    plain = await provider.create_user(Applicant("kim@example.com"), PASSWORD)
    assert standin.state.users[plain.user_id]["user_metadata"] == {}
    assert plain.user_metadata is None


async def test_absent_names_are_omitted(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    account = await provider.create_user(Applicant("grace@example.com"), PASSWORD)

    assert account.given_name is None and account.family_name is None
    assert account.name == "grace@example.com"
    assert "given_name" not in standin.state.users[account.user_id]


async def test_from_settings(standin: Auth0Standin) -> None:
    settings = Settings(
        identity_provider="auth0",
        auth0_domain=standin.domain,
        auth0_client_id=standin.client_id,
        auth0_client_secret=SecretStr(standin.client_secret),
        auth0_base_url=standin.url + "/",
        auth0_timeout_seconds=2.0,
    )
    p = Auth0IdentityProvider.from_settings(settings)
    try:
        assert p.base_url == standin.url
        assert p.audience == standin.audience
        assert standin.client_secret not in repr(p)
        account = await p.create_user(Applicant("settings@example.com"), PASSWORD)
        assert account.email == "settings@example.com"
    finally:
        await p.close()


# -- refusals ----------------------------------------------------------------------------


async def test_duplicate_email_is_409_and_not_retried(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    await provider.create_user(ADA, PASSWORD)

    with pytest.raises(EmailAlreadyRegistered) as caught:
        await provider.create_user(Applicant("ADA@example.com"), PASSWORD)

    assert_no_password(caught.value)
    counters = standin.state.counters
    assert counters.create_calls == 2
    assert counters.create_status[409] == 1


@pytest.mark.parametrize(
    ("config", "applicant", "password", "words"),
    [
        ({"password_policy": "fair"}, ADA, "alllowercase", "weak"),
        ({"password_dictionary": ["correcthorse"]}, ADA, "correcthorse", "common"),
        (
            {"password_no_personal_info": True},
            Applicant("ada.lovelace@example.com"),
            "ada.lovelace!2024",
            "your name or e-mail",
        ),
        ({"password_history": ["Used-Before-1"]}, ADA, "Used-Before-1", "used before"),
    ],
    ids=["strength", "dictionary", "no-user-info", "history"],
)
async def test_password_errors_become_field_errors(
    standin: Auth0Standin,
    provider: Auth0IdentityProvider,
    config: dict[str, Any],
    applicant: Applicant,
    password: str,
    words: str,
) -> None:
    standin.configure(**config)

    with structlog.testing.capture_logs() as logs, pytest.raises(FieldRejected) as caught:
        await provider.create_user(applicant, password)

    assert caught.value.field == "password"
    assert words in caught.value.message
    assert "Error:" not in caught.value.message  # our own text, not Auth0's
    assert_no_password(caught.value, password)
    assert password not in repr(logs)
    assert standin.state.users == {}


@pytest.mark.parametrize(
    ("applicant", "field"),
    [
        (Applicant("not-an-email"), "email"),
        (Applicant("long@example.com", given_name="x" * 151), "given_name"),
    ],
)
async def test_invalid_body_names_the_field(
    provider: Auth0IdentityProvider, applicant: Applicant, field: str
) -> None:
    with pytest.raises(FieldRejected) as caught:
        await provider.create_user(applicant, PASSWORD)

    assert caught.value.field == field
    assert_no_password(caught.value)


def test_invalid_body_without_a_property_is_the_body() -> None:
    p = Auth0IdentityProvider(domain="x.auth0.com", client_id="c", client_secret=SecretStr("s"))
    error = p._bad_request(
        "invalid_body", "Payload validation error: 'Additional properties not allowed: x'.", "pw"
    )
    assert isinstance(error, FieldRejected)
    assert error.field == "body"
    error = p._bad_request("auth0_idp_error", "The username provided is in use already.", "pw")
    assert isinstance(error, FieldRejected)
    assert error.field == "username"
    # A provider message that echoes the password is never passed on.
    error = p._bad_request("something_new", f"Refused: {PASSWORD}", PASSWORD)
    assert_no_password(error)


async def test_unknown_connection_is_our_misconfiguration(standin: Auth0Standin) -> None:
    p = make_provider(standin, connection="No-Such-Connection")
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await p.create_user(ADA, PASSWORD)
    finally:
        await p.close()
    assert not isinstance(caught.value, OutcomeUnknown)
    assert "inexistent_connection" in str(caught.value)
    assert_no_password(caught.value)


async def test_insufficient_scope_is_unavailable(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(token_scope="read:users")

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.create_user(ADA, PASSWORD)

    assert not isinstance(caught.value, OutcomeUnknown)
    assert standin.state.counters.create_status[403] == 1


# -- token -------------------------------------------------------------------------------


async def test_token_is_cached_across_calls(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    for i in range(5):
        await provider.create_user(Applicant(f"cached{i}@example.com"), PASSWORD)
    await provider.find_by_email("cached0@example.com")

    assert standin.state.counters.token_requests == 1
    assert provider.token_requests == 1


async def test_concurrent_calls_on_an_empty_cache_fetch_one_token(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(token_latency=0.05)

    accounts = await asyncio.gather(
        *(provider.create_user(Applicant(f"c{i}@example.com"), PASSWORD) for i in range(25))
    )

    assert len({a.user_id for a in accounts}) == 25
    assert standin.state.counters.token_requests == 1


async def test_expiring_token_is_refreshed_before_it_runs_out(
    standin: Auth0Standin, clocked: Auth0IdentityProvider, clock: ManualClock
) -> None:
    standin.configure(token_expires_in=3600)  # refreshed after 0.9 x 3600 s = 3240 s
    await clocked.create_user(Applicant("early@example.com"), PASSWORD)
    clock.advance(3239)
    await clocked.create_user(Applicant("still@example.com"), PASSWORD)
    assert standin.state.counters.token_requests == 1

    clock.advance(2)  # 3241 s: due for a refresh, 359 s before the token runs out
    await clocked.create_user(Applicant("late@example.com"), PASSWORD)

    counters = standin.state.counters
    assert counters.token_requests == 2
    assert clocked.token_requests == 2
    assert counters.create_status[401] == 0  # refreshed ahead, not after a refusal


async def test_401_drops_the_token_refreshes_once_and_retries(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    await provider.create_user(Applicant("first@example.com"), PASSWORD)
    standin.revoke_tokens()

    account = await provider.create_user(Applicant("second@example.com"), PASSWORD)

    assert account.email == "second@example.com"
    counters = standin.state.counters
    assert counters.token_requests == 2
    assert counters.create_status[401] == 1
    assert counters.create_status[201] == 2


async def test_second_401_is_unavailable(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(token_expires_in=0)  # every token is expired on arrival

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.create_user(ADA, PASSWORD)

    assert not isinstance(caught.value, OutcomeUnknown)
    counters = standin.state.counters
    assert counters.create_status[401] == 2
    assert counters.token_requests == 2


@pytest.mark.parametrize(
    "config",
    [
        {"client_secret": "rotated-secret"},
        {"client_grant": False},
        {"allow_client_credentials": False},
    ],
    ids=["wrong-secret", "no-client-grant", "grant-type-not-allowed"],
)
async def test_token_refusals_are_unavailable_and_never_log_the_secret(
    standin: Auth0Standin, provider: Auth0IdentityProvider, config: dict[str, Any]
) -> None:
    standin.configure(**config)

    with structlog.testing.capture_logs() as logs, pytest.raises(ProviderUnavailable) as caught:
        await provider.create_user(ADA, PASSWORD)

    assert not isinstance(caught.value, OutcomeUnknown)
    assert "standin-secret" not in str(caught.value)
    assert "standin-secret" not in repr(logs)
    assert any(entry["event"] == "auth0.token.refused" for entry in logs)
    assert standin.state.counters.create_calls == 0
    # A burst of callers right after does not hammer the token endpoint.
    with pytest.raises(ProviderUnavailable):
        await provider.create_user(ADA, PASSWORD)
    assert standin.state.counters.token_requests == 1


async def test_a_failed_token_request_is_remembered_for_a_second(
    standin: Auth0Standin, clocked: Auth0IdentityProvider, clock: ManualClock
) -> None:
    standin.configure(client_secret="rotated-secret")
    with pytest.raises(ProviderUnavailable):
        await clocked.create_user(ADA, PASSWORD)
    clock.advance(0.99)
    with pytest.raises(ProviderUnavailable):
        await clocked.create_user(ADA, PASSWORD)
    assert standin.state.counters.token_requests == 1

    clock.advance(0.02)
    with pytest.raises(ProviderUnavailable):
        await clocked.create_user(ADA, PASSWORD)

    assert standin.state.counters.token_requests == 2
    assert clocked.token_failures == 2


# -- rate limit --------------------------------------------------------------------------


async def _drain_bucket(standin: Auth0Standin) -> None:
    """Another client of the same tenant takes the bucket's only token."""
    other = make_provider(standin)
    try:
        await other.create_user(Applicant("other@example.com"), PASSWORD)
    finally:
        await other.close()


async def test_429_with_a_near_reset_waits_for_it_and_succeeds(
    standin: Auth0Standin, clocked: Auth0IdentityProvider, clock: ManualClock
) -> None:
    standin.configure(rate_per_second=2.0, burst=1)
    await _drain_bucket(standin)

    call = asyncio.create_task(clocked.create_user(ADA, PASSWORD))
    await until(lambda: clocked.gate.queued == 1)  # limited; the retry waits in the gate
    assert clocked.gate.limited == 1
    reset_at = clocked.gate.reset_at
    assert reset_at is not None and 0.5 <= reset_at - clock.time() <= 1.5

    clock.advance(reset_at - clock.time() - 0.01)
    assert clocked.gate.queued == 1  # not let go before the reset
    clock.advance(0.02)
    account = await call

    assert account.email == ADA.email
    assert standin.state.counters.rate_limited == 1
    assert clocked.gate.refused == 0


async def test_429_with_a_far_reset_is_unavailable_at_once_with_retry_after(
    standin: Auth0Standin, clocked: Auth0IdentityProvider
) -> None:
    standin.configure(rate_per_second=0.1, burst=1)  # full again only after 10 s
    await _drain_bucket(standin)

    # The clock stands still: a call that waited for the reset or its deadline would hang.
    async with asyncio.timeout(5.0):
        with pytest.raises(ProviderUnavailable) as caught:
            await clocked.create_user(ADA, PASSWORD)

    assert not isinstance(caught.value, OutcomeUnknown)
    assert 5.0 < caught.value.retry_after <= 12.0
    assert clocked.gate.refused == 1
    assert standin.state.users_by_email(ADA.email) == []


async def test_pacing_holds_calls_so_no_429_reaches_the_client(
    standin: Auth0Standin, clocked: Auth0IdentityProvider, clock: ManualClock
) -> None:
    standin.configure(rate_per_second=2.0, burst=3)

    calls = [
        asyncio.create_task(clocked.create_user(Applicant(f"p{i}@example.com"), PASSWORD))
        for i in range(6)
    ]
    await until(lambda: clocked.gate.queued == 3 and clocked.gate.in_flight == 0)
    # The bucket's three went out; the other three wait, unsent, for its reset.
    assert standin.state.counters.create_calls == 3
    reset_at = clocked.gate.reset_at
    assert reset_at is not None

    clock.advance(reset_at - clock.time() - 0.01)
    assert clocked.gate.queued == 3
    clock.advance(0.02)
    accounts = await asyncio.gather(*calls)

    assert len({a.user_id for a in accounts}) == 6
    assert standin.state.counters.rate_limited == 0
    assert clocked.gate.limited == 0
    assert clocked.gate.waits >= 3
    assert clocked.gate.refused == 0


async def test_pacing_refuses_calls_that_would_wait_past_their_deadline(
    standin: Auth0Standin, clock: ManualClock
) -> None:
    standin.configure(rate_per_second=2.0, burst=3)
    p = make_provider(standin, clock=clock, queue_deadline_seconds=0.3)
    try:
        async with asyncio.timeout(5.0):  # the clock stands still: no call may wait
            results = await asyncio.gather(
                *(p.create_user(Applicant(f"d{i}@example.com"), PASSWORD) for i in range(6)),
                return_exceptions=True,
            )
    finally:
        await p.close()

    refused = [r for r in results if isinstance(r, ProviderUnavailable)]
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 3 and len(refused) == 3
    assert all(not isinstance(r, OutcomeUnknown) and r.retry_after >= 0.5 for r in refused)
    assert p.gate.refused == 3
    assert standin.state.counters.rate_limited == 0
    assert len(standin.state.users) == 3


async def test_a_queued_call_is_refused_when_its_deadline_passes(
    standin: Auth0Standin, clocked: Auth0IdentityProvider, clock: ManualClock
) -> None:
    # The first call finds out how the tenant is metered; the second waits for its answer,
    # which the stand-in holds back (in real time) while the test moves the clock on.
    standin.configure(latency=0.3)
    first = asyncio.create_task(clocked.create_user(ADA, PASSWORD))
    second = asyncio.create_task(clocked.create_user(Applicant("b@example.com"), PASSWORD))
    await until(lambda: clocked.gate.queued == 1)

    clock.advance(clocked.queue_deadline_seconds - 0.01)
    assert not second.done()
    assert clocked.gate.queued == 1
    clock.advance(0.02)
    with pytest.raises(ProviderUnavailable) as caught:
        await second

    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.retry_after >= 1.0
    assert clocked.gate.refused == 1
    assert (await first).email == ADA.email
    assert standin.state.users_by_email("b@example.com") == []


# -- lost answers ------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"share_500": 1.0}, {"share_503": 1.0}])
async def test_5xx_is_outcome_unknown_and_not_retried(
    standin: Auth0Standin, provider: Auth0IdentityProvider, config: dict[str, float]
) -> None:
    standin.configure(**config)

    with pytest.raises(OutcomeUnknown) as caught:
        await provider.create_user(ADA, PASSWORD)

    assert_no_password(caught.value)
    assert standin.state.counters.create_calls == 1


async def test_create_then_500_is_outcome_unknown_and_the_user_exists(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(share_create_then_500=1.0)

    with pytest.raises(OutcomeUnknown):
        await provider.create_user(ADA, PASSWORD)

    assert len(standin.state.users_by_email(ADA.email)) == 1


async def test_create_then_hang_is_outcome_unknown_and_the_user_exists(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(share_create_then_hang=1.0, hang_seconds=3.0)

    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as caught:
        await provider.create_user(ADA, PASSWORD)

    assert time.monotonic() - started < TIMEOUT + 0.5
    assert_no_password(caught.value)
    assert len(standin.state.users_by_email(ADA.email)) == 1
    standin.configure(share_create_then_hang=0.0)
    found = await provider.find_by_email(ADA.email)
    assert [a.email for a in found] == [ADA.email]


async def test_slow_answer_past_the_timeout_is_outcome_unknown(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(share_slow=1.0, slow_seconds=1.5)

    with pytest.raises(OutcomeUnknown):
        await provider.create_user(ADA, PASSWORD)


async def test_refused_connection_is_unavailable(standin: Auth0Standin) -> None:
    p = make_provider(standin, base_url=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await p.create_user(ADA, PASSWORD)
    finally:
        await p.close()

    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.retry_after > 0
    assert_no_password(caught.value)


async def test_refused_connection_after_the_token_is_unavailable() -> None:
    async with running_standin() as s:
        p = make_provider(s)
        await p.create_user(Applicant("before@example.com"), PASSWORD)
    try:  # the stand-in is gone now; the token is still cached
        with pytest.raises(ProviderUnavailable) as caught:
            await p.create_user(ADA, PASSWORD)
    finally:
        await p.close()
    assert not isinstance(caught.value, OutcomeUnknown)


# -- look-up -----------------------------------------------------------------------------


async def test_find_by_email(standin: Auth0Standin, provider: Auth0IdentityProvider) -> None:
    created = await provider.create_user(ADA, PASSWORD)

    found = await provider.find_by_email("Ada@Example.com")
    missing = await provider.find_by_email("nobody@example.com")

    assert [a.user_id for a in found] == [created.user_id]
    assert found[0].given_name == "Ada"
    assert missing == []
    assert standin.state.counters.lookup_status[200] == 2


async def test_the_account_carries_the_intent_that_made_it(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    marked = Applicant("grace@example.com", "Grace", intent_id="0193-intent")
    created = await provider.create_user(marked, PASSWORD)
    unmarked = await provider.create_user(ADA, PASSWORD)

    [found] = await provider.find_by_email("grace@example.com")
    [other] = await provider.find_by_email(ADA.email)

    assert created.intent_id == found.intent_id == "0193-intent"
    assert unmarked.intent_id is None and other.intent_id is None
    # Auth0 keeps exactly the sign-up's id: nothing derived from the password.
    assert standin.state.users[found.user_id]["app_metadata"] == {"signup_intent": "0193-intent"}
    assert standin.state.users[other.user_id]["app_metadata"] == {}


async def test_find_by_email_failure_is_unavailable(
    standin: Auth0Standin, provider: Auth0IdentityProvider
) -> None:
    standin.configure(token_scope="create:users")

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.find_by_email(ADA.email)

    assert not isinstance(caught.value, OutcomeUnknown)


async def test_close_then_use_again(standin: Auth0Standin) -> None:
    p = make_provider(standin)
    await p.close()  # closing before any use is fine
    await p.create_user(ADA, PASSWORD)
    await p.close()
    await p.close()
