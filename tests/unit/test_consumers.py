"""The consumers' use cases, the e-mail and signature details, and the runtime's pure parts."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import orjson
import pytest
from pydantic import ValidationError

from signup.adapters.consumer import Topology, _KeyedLocks, _malformed_reason
from signup.adapters.crm import HttpCrm, sign, signing_key
from signup.adapters.failures import PermanentFailure, TransientFailure
from signup.adapters.mailer import SmtpMailer
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.service_layer.consumers import (
    Brand,
    compose_welcome,
    contact_of,
    greeting_name,
    message_id,
    send_welcome_email,
    sync_contact,
)

BRAND = Brand(site_name="Naked Coders", site_url="https://nc.test/", mail_from="hi@nc.test")


def event(
    *,
    given_name: str | None = "Ada",
    family_name: str | None = "Lovelace",
    name: str = "Ada Lovelace",
    email: str = "ada@example.com",
    event_id: str | None = None,
) -> UserRegistered:
    created = datetime(2026, 11, 26, 10, 0, 0, 100_000, tzinfo=UTC)
    return UserRegistered(
        id=event_id or str(uuid.uuid4()),
        source="urn:signup:naked-coders",
        time=created,
        data=UserRegisteredData(
            user_id="auth0|6762",
            email=email,
            email_verified=False,
            given_name=given_name,
            family_name=family_name,
            name=name,
            created_at=created,
            identity_provider="auth0",
        ),
    )


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


# --- greeting and composition ---------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name", "expected"),
    [
        ("Ada", "Ada Lovelace", "Ada"),
        ("  Ada  ", "Ada Lovelace", "Ada"),
        (None, "Grace Hopper", "Grace Hopper"),
        ("", "Grace Hopper", "Grace Hopper"),
        (None, "ada@example.com", "there"),  # Auth0 uses the e-mail as name
        (None, "   ", "there"),
    ],
)
def test_greeting_name(given: str | None, name: str, expected: str) -> None:
    assert greeting_name(event(given_name=given, name=name)) == expected


def test_welcome_email_has_both_parts_and_the_brand() -> None:
    e = event()
    message = compose_welcome(e, BRAND)
    assert message["Subject"] == "Welcome to Naked Coders"
    assert message["From"] == "hi@nc.test"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message["Message-ID"] == f"<{e.id}@signup>"
    assert message["Auto-Submitted"] == "auto-generated"
    text, html = bodies(message)
    assert text.startswith("Hi Ada,")
    assert "https://nc.test/" in text
    assert "Hi Ada," in html
    assert 'href="https://nc.test/"' in html
    assert "Naked Coders" in html


def test_everything_from_the_event_is_escaped_in_html() -> None:
    nasty = '<script>alert("x")</script>'
    message = compose_welcome(event(given_name=nasty, name=f"{nasty} & Co"), BRAND)
    text, html = bodies(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert f"Hi {nasty}," in text  # plain text is not HTML: no entities there


def test_an_address_that_cannot_be_a_header_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentFailure):
        compose_welcome(event(email="ada@example.com\r\nBcc: all@example.com"), BRAND)


def test_message_id_comes_from_the_event_id() -> None:
    assert message_id("0b9f-uuid") == "<0b9f-uuid@signup>"
    odd = message_id("a b>c")
    assert odd.startswith("<") and odd.endswith("@signup>")
    assert " " not in odd and odd == message_id("a b>c")


def test_contact_document() -> None:
    e = event()
    assert contact_of(e) == {
        "user_id": "auth0|6762",
        "email": "ada@example.com",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "created_at": "2026-11-26T10:00:00.100Z",
        "source": "urn:signup:naked-coders",
    }


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


class FakeCrm:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, Mapping[str, Any]]] = []

    async def push_contact(self, idempotency_key: str, contact: Mapping[str, Any]) -> None:
        self.pushed.append((idempotency_key, contact))

    async def close(self) -> None:
        pass


async def test_use_cases_call_their_ports() -> None:
    e = event()
    mailer, crm = FakeMailer(), FakeCrm()
    await send_welcome_email(e, mailer=mailer, brand=BRAND)
    await sync_contact(e, crm=crm)
    assert [m["Message-ID"] for m in mailer.sent] == [f"<{e.id}@signup>"]
    assert crm.pushed == [(e.id, contact_of(e))]


# --- Standard Webhooks signature --------------------------------------------------------


def test_signature_matches_the_standard_webhooks_example() -> None:
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_key_parsing() -> None:
    raw = b"0123456789abcdef"
    encoded = base64.b64encode(raw).decode()
    assert signing_key(f"whsec_{encoded}") == raw
    assert signing_key(encoded) == raw
    for bad in ("whsec_not base64!", "whsec_"):
        with pytest.raises(ValueError):
            signing_key(bad)
    with pytest.raises(ValueError):
        HttpCrm(url="http://crm.test", secret="whsec_***")


# --- SMTP failure classification ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b.test")]
            ),
            PermanentFailure,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "greylisted", "a@b.test")]
            ),
            TransientFailure,
        ),
        (aiosmtplib.SMTPDataError(554, "spam"), PermanentFailure),
        (aiosmtplib.SMTPDataError(451, "later"), TransientFailure),
        (aiosmtplib.SMTPAuthenticationError(535, "bad login"), TransientFailure),
        (aiosmtplib.SMTPSenderRefused(553, "no", "hi@nc.test"), TransientFailure),
        (aiosmtplib.SMTPConnectError("refused"), TransientFailure),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TransientFailure),
        (ConnectionRefusedError("refused"), TransientFailure),
    ],
)
async def test_smtp_failures_are_sorted(
    monkeypatch: pytest.MonkeyPatch, error: Exception, kind: type[Exception]
) -> None:
    async def failing_send(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(aiosmtplib, "send", failing_send)
    mailer = SmtpMailer(host="127.0.0.1", port=2525)
    with pytest.raises(kind):
        await mailer.send(compose_welcome(event(), BRAND))


async def test_smtp_settings_are_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def fake_send(message: EmailMessage, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return {}, "OK"

    monkeypatch.setattr(aiosmtplib, "send", fake_send)
    mailer = SmtpMailer(
        host="smtp.test", port=587, username="u", password="p", starttls=True, timeout=5
    )
    await mailer.send(compose_welcome(event(), BRAND))
    assert seen == {
        "hostname": "smtp.test",
        "port": 587,
        "username": "u",
        "password": "p",
        "start_tls": True,
        "timeout": 5,
    }
    await SmtpMailer(host="localhost", port=25).send(compose_welcome(event(), BRAND))
    assert seen["start_tls"] is False
    assert seen["username"] is None and seen["password"] is None


# --- runtime pieces -------------------------------------------------------------------


def test_topology_names_and_arguments() -> None:
    topology = Topology(
        name="welcome-email",
        exchange="users",
        retry_delays_seconds=(5, 30, 300, 1800, 1800),
        delivery_limit=20,
    )
    assert topology.queue == "signup.welcome-email"
    assert topology.dead_queue == "signup.welcome-email.dead"
    assert topology.retry_delays_ms == (5000, 30000, 300000, 1800000, 1800000)
    assert topology.retry_queues == (
        "signup.welcome-email.retry.5000",
        "signup.welcome-email.retry.30000",
        "signup.welcome-email.retry.300000",
        "signup.welcome-email.retry.1800000",
    )
    assert topology.queue_arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "signup.welcome-email.dead",
    }
    assert topology.retry_arguments(5000) == {
        "x-queue-type": "classic",
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "signup.welcome-email",
    }


def test_malformed_reasons_name_the_fields() -> None:
    body = orjson.loads(event().to_json())
    del body["data"]["email"]
    with pytest.raises(ValidationError) as caught:
        UserRegistered.from_json(orjson.dumps(body))
    reason = _malformed_reason(caught.value)
    assert reason.startswith("malformed user.new event: ")
    assert "data.email: Field required" in reason
    with pytest.raises(ValidationError) as caught:
        UserRegistered.from_json(b"\xff not json")
    assert len(_malformed_reason(caught.value)) <= 500


async def test_keyed_locks_serialise_one_key_and_forget_it() -> None:
    locks = _KeyedLocks()
    order: list[str] = []

    async def hold(key: str, label: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{label}+")
            await asyncio.sleep(pause)
            order.append(f"{label}-")

    await asyncio.gather(hold("a", "1", 0.05), hold("a", "2", 0), hold("b", "3", 0))
    assert order.index("1-") < order.index("2+")
    assert order.index("3+") < order.index("1-")
    assert locks._locks == {}
