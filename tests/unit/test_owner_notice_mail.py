"""The `user.signup_attempted` event and the e-mail the welcome worker makes of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiosmtplib.email import extract_recipients, flatten_message
from mail_fixtures import WELCOME_HEADERS, wire_header_names
from pydantic import ValidationError

from signup.bootstrap import topology_for
from signup.domain.events import (
    SignupAttempted,
    SignupAttemptedData,
    UserRegistered,
    parse_consumed,
)
from signup.service_layer.consumers import (
    Brand,
    compose_attempt_notice,
    send_welcome_email,
    sync_contact,
)
from signup.service_layer.failures import PermanentFailure
from signup.settings import Settings

BRAND = Brand(
    site_name="Test Brand",
    site_url="https://brand.test",
    mail_from="hello@brand.test",
    sign_in_url="https://brand.test/login",
)
AT = datetime(2026, 12, 5, 7, 30, 12, 345000, tzinfo=UTC)


def attempt(email: str = "ada@example.com") -> SignupAttempted:
    return SignupAttempted(
        id="0193a5c4-7e1f-7c3a-9d2e-5b8f0a1c2d3e",
        source="urn:signup:test",
        time=AT,
        data=SignupAttemptedData(user_id="local|abc", email=email, attempted_at=AT),
    )


def test_the_event_is_a_cloudevent_with_only_whose_and_when() -> None:
    body = attempt().as_dict()
    assert body["type"] == "user.signup_attempted" and body["specversion"] == "1.0"
    assert body["data"] == {
        "user_id": "local|abc",
        "email": "ada@example.com",
        "attempted_at": "2026-12-05T07:30:12.345Z",
        "language": None,
    }
    assert SignupAttempted.routing_key == "user.signup_attempted"


def test_a_worker_tells_the_events_apart_by_type() -> None:
    assert isinstance(parse_consumed(attempt().to_json()), SignupAttempted)
    with pytest.raises(ValueError):
        parse_consumed(b"not json")
    with pytest.raises(ValidationError):
        parse_consumed(b'{"type": "user.signup_attempted", "data": {}}')


def test_the_notice_says_what_happened_and_where_to_sign_in() -> None:
    message = compose_attempt_notice(attempt(), BRAND)
    assert extract_recipients(message) == ["ada@example.com"]
    assert sorted(wire_header_names(flatten_message(message))) == WELCOME_HEADERS
    assert message["Subject"] == "Someone tried to create a Test Brand account with your address"
    assert message["Message-ID"] == "<0193a5c4-7e1f-7c3a-9d2e-5b8f0a1c2d3e@signup>"
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    content = str(text.get_content())
    assert "2026-12-05 07:30 UTC" in content
    assert "sign in, or reset your password" in content
    assert "https://brand.test/login" in content
    assert "ignore this e-mail" in content


def test_without_a_sign_in_address_the_site_is_named() -> None:
    plain = Brand(site_name="B", site_url="https://b.test", mail_from="m@b.test")
    assert "https://b.test" in compose_attempt_notice(attempt(), plain).as_string()


def test_an_address_that_cannot_be_written_is_parked() -> None:
    with pytest.raises(PermanentFailure):
        compose_attempt_notice(attempt("ada@example.com\r\nBcc: evil@x.test"), BRAND)


class Sent:
    def __init__(self) -> None:
        self.messages: list[object] = []

    async def send(self, message: object) -> None:
        self.messages.append(message)


class NoCrm:
    async def push_contact(self, key: str, contact: object) -> None:
        raise AssertionError("the CRM is not told of attempts")

    async def close(self) -> None:
        pass


async def test_the_welcome_worker_sends_it_and_the_crm_ignores_it() -> None:
    mailer = Sent()
    await send_welcome_email(attempt(), mailer=mailer, brand=BRAND)  # type: ignore[arg-type]
    assert len(mailer.messages) == 1
    await sync_contact(attempt(), crm=NoCrm())


def test_only_the_welcome_worker_binds_the_attempts() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert topology_for("welcome-email", settings).routing_keys == (
        "user.new",
        "user.signup_attempted",
    )
    assert topology_for("crm-sync", settings).routing_keys == ("user.new",)
    assert UserRegistered.routing_key == "user.new"
