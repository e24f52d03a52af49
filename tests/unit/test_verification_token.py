"""E-mail verification of local accounts: the token, the use case, the welcome e-mail's link."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from pydantic import ValidationError

from signup.domain.events import UserRegistered, UserRegisteredData, UserVerified
from signup.domain.model import CreatedAccount
from signup.domain.verification import TokenProblem, VerificationClaim, make_token, read_token
from signup.service_layer.consumers import Brand, compose_welcome
from signup.service_layer.verification import (
    EmailVerification,
    Verification,
    VerificationLinks,
)
from signup.settings import Settings
from signup.testing.fakes import FakeUnitOfWork

KEY = b"k" * 32
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
USER = "local|0123456789abcdef01234567"


def test_a_token_says_whose_address_until_when() -> None:
    token = make_token(KEY, USER, NOW + timedelta(days=5))
    claim = read_token(KEY, token, NOW)
    assert claim == VerificationClaim(USER, int((NOW + timedelta(days=5)).timestamp()))
    assert len(token) < 120 and token.startswith("v1.")


def _parts(token: str) -> list[str]:
    return token.split(".")


@pytest.mark.parametrize(
    "forge",
    [
        # another account's id under the same signature
        lambda t: ".".join(
            [
                _parts(t)[0],
                base64.urlsafe_b64encode(b"local|ffff").decode().rstrip("="),
                *_parts(t)[2:],
            ]
        ),
        # a later expiry
        lambda t: ".".join([*_parts(t)[:2], str(int(_parts(t)[2]) + 86_400), _parts(t)[3]]),
        # the signature changed by one character
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
        lambda t: t.replace("v1.", "v2.", 1),
        lambda t: t + ".",
        lambda t: t[:-10],
        lambda t: "",
        lambda t: "x" * 600,
        lambda t: t.replace(_parts(t)[1], "%%%"),
        lambda t: "v1.ü.1.2",
    ],
)
def test_a_changed_or_foreign_token_is_malformed(forge: object) -> None:
    token = make_token(KEY, USER, NOW + timedelta(days=1))
    assert callable(forge)
    assert read_token(KEY, forge(token), NOW) is TokenProblem.MALFORMED


def test_another_keys_token_is_malformed_and_an_old_one_expired() -> None:
    token = make_token(KEY, USER, NOW + timedelta(hours=1))
    assert read_token(b"o" * 32, token, NOW) is TokenProblem.MALFORMED
    assert read_token(KEY, token, NOW + timedelta(hours=1)) is TokenProblem.EXPIRED
    assert isinstance(read_token(KEY, token, NOW + timedelta(minutes=59)), VerificationClaim)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def _with_account(uow: FakeUnitOfWork, *, verified: bool = False) -> None:
    account = CreatedAccount(
        user_id=USER, email="ada@example.com", email_verified=verified, created_at=NOW
    )
    await uow.run(lambda tx: tx.users.add(account))


def _service(uow: FakeUnitOfWork, clock: Clock) -> EmailVerification:
    return EmailVerification(uow=uow, key=KEY, clock=clock, source="urn:signup:test")


def _events(uow: FakeUnitOfWork) -> list[UserVerified]:
    return [
        UserVerified.from_json(e.payload)
        for e in uow.state.outbox.values()
        if e.routing_key == "user.verified"
    ]


async def test_opening_the_link_verifies_the_account_and_writes_one_event() -> None:
    uow, clock = FakeUnitOfWork(), Clock()
    await _with_account(uow)
    token = make_token(KEY, USER, NOW + timedelta(days=5))
    clock.now = NOW + timedelta(minutes=3)

    result = await _service(uow, clock).verify(token)

    assert result.outcome is Verification.VERIFIED and result.email == "ada@example.com"
    assert uow.state.users["ada@example.com"].email_verified
    [event] = _events(uow)
    assert event.type == "user.verified" and event.source == "urn:signup:test"
    assert event.time == clock.now and event.data.verified_at == clock.now
    assert event.data.user_id == USER and event.data.email == "ada@example.com"
    assert event.data.email_verified is True and event.data.identity_provider == "local"
    body = orjson.loads(event.to_json())
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert body["time"] == "2026-12-05T10:03:00.000Z"
    entry = next(iter(uow.state.outbox.values()))
    assert (entry.event_type, entry.event_id) == ("user.verified", event.id)


async def test_a_used_link_changes_nothing_and_says_so() -> None:
    uow, clock = FakeUnitOfWork(), Clock()
    await _with_account(uow)
    service = _service(uow, clock)
    first = make_token(KEY, USER, NOW + timedelta(days=5))
    second = make_token(KEY, USER, NOW + timedelta(days=6))  # a repeated e-mail's link
    assert (await service.verify(first)).outcome is Verification.VERIFIED
    commits = uow.commits

    for token in (first, second):
        result = await service.verify(token)
        assert result.outcome is Verification.ALREADY_VERIFIED
    assert len(_events(uow)) == 1
    assert len(uow.state.outbox) == 1
    assert uow.commits - commits <= 2  # the guarded update found nothing to change


async def test_expired_forged_and_unknown_links_write_nothing() -> None:
    uow, clock = FakeUnitOfWork(), Clock()
    await _with_account(uow)
    service = _service(uow, clock)
    expired = make_token(KEY, USER, NOW - timedelta(seconds=1))
    forged = make_token(b"x" * 32, USER, NOW + timedelta(days=1))
    unknown = make_token(KEY, "local|nobody", NOW + timedelta(days=1))

    assert (await service.verify(expired)).outcome is Verification.EXPIRED
    assert (await service.verify(expired)).email == "ada@example.com"
    assert (await service.verify(forged)).outcome is Verification.INVALID
    assert (await service.verify(forged)).email is None
    assert (await service.verify(unknown)).outcome is Verification.INVALID
    assert (await service.verify("")).outcome is Verification.INVALID
    assert not uow.state.users["ada@example.com"].email_verified
    assert not uow.state.outbox


async def test_an_expired_link_of_a_verified_account_is_a_used_one() -> None:
    uow, clock = FakeUnitOfWork(), Clock()
    await _with_account(uow, verified=True)
    expired = make_token(KEY, USER, NOW - timedelta(days=1))
    result = await _service(uow, clock).verify(expired)
    assert result.outcome is Verification.ALREADY_VERIFIED
    assert not uow.state.outbox


def _registered(provider: str = "local", verified: bool = False) -> UserRegistered:
    return UserRegistered(
        id="0193a5c4-7e1f-7c3a-9d2e-5b8f0a1c2d3e",
        source="urn:signup:test",
        time=NOW,
        data=UserRegisteredData(
            user_id=USER if provider == "local" else "auth0|abc",
            email="ada@example.com",
            email_verified=verified,
            given_name="Ada",
            family_name=None,
            name="Ada",
            created_at=NOW,
            identity_provider=provider,
        ),
    )


def _brand(links: VerificationLinks | None) -> Brand:
    return Brand(
        site_name="Naked Coders",
        site_url="https://nc.test",
        mail_from="hi@nc.test",
        verification=links,
    )


def _bodies(event: UserRegistered, brand: Brand) -> tuple[str, str]:
    message = compose_welcome(event, brand)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_the_welcome_email_of_a_local_account_carries_a_working_link() -> None:
    clock = Clock()
    links = VerificationLinks(
        key=KEY, site_url="https://nc.test/", ttl=timedelta(days=5), clock=clock
    )
    text, html = _bodies(_registered(), _brand(links))
    [line] = [x for x in text.splitlines() if "/signup/verify?" in x]
    url = urlsplit(line)
    assert (url.scheme, url.netloc, url.path) == ("https", "nc.test", "/signup/verify")
    [token] = parse_qs(url.query)["token"]
    claim = read_token(KEY, token, NOW)
    assert isinstance(claim, VerificationClaim) and claim.user_id == USER
    assert claim.expires_at == int((NOW + timedelta(days=5)).timestamp())
    assert f'href="{line}"' in html


@pytest.mark.parametrize(
    ("event", "links"),
    [
        (_registered(provider="auth0"), True),  # Auth0 sends its own verification e-mail
        (_registered(verified=True), True),
        (_registered(), False),  # SIGNUP_VERIFY_KEY unset
    ],
)
def test_no_link_for_auth0_verified_or_without_a_key(event: UserRegistered, links: bool) -> None:
    maker = VerificationLinks(key=KEY, site_url="https://nc.test", ttl=timedelta(1), clock=Clock())
    text, html = _bodies(event, _brand(maker if links else None))
    assert "/signup/verify" not in text and "/signup/verify" not in html
    assert "confirm" not in text.lower()


def test_the_key_is_long_or_absent_and_only_local_accounts_verify() -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(verify_key="short")  # type: ignore[arg-type]
    assert not Settings(verify_key="").verifies_email  # type: ignore[arg-type]
    assert Settings(verify_key="k" * 32).verifies_email  # type: ignore[arg-type]
    auth0 = Settings(
        verify_key="k" * 32,  # type: ignore[arg-type]
        identity_provider="auth0",
        auth0_domain="t.eu.auth0.com",
        auth0_client_id="id",
        auth0_client_secret="secret",  # type: ignore[arg-type]
    )
    assert not auth0.verifies_email
