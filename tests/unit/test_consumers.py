"""The consumers' use cases, the e-mail and signature details, and the runtime's pure parts."""

from __future__ import annotations

import asyncio
import base64
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import orjson
import pytest
from aiosmtplib.email import extract_recipients, flatten_message
from hypothesis import given
from hypothesis import strategies as st
from mail_fixtures import ATTACKS, WELCOME_HEADERS, assert_only_what_we_wrote, wire_header_names
from pydantic import ValidationError

from signup.adapters.consumer import Topology
from signup.adapters.consumer.runtime import _KeyedLocks, _malformed_reason
from signup.adapters.crm import HttpCrm, sign, signing_key
from signup.adapters.mailer import SmtpMailer
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.service_layer.consumers import (
    Brand,
    check_wire_form,
    compose_welcome,
    contact_of,
    greeting_name,
    message_id,
    send_welcome_email,
    sync_contact,
)
from signup.service_layer.failures import PermanentFailure, TransientFailure

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
        ("Jean-Luc", "Jean-Luc Picard", "Jean-Luc"),
        ("O\u2019Brien", "x", "O\u2019Brien"),
        ("Zo\u00eb", "x", "Zo\u00eb"),
        ("F3", "F3 Lovelace", "there"),  # nothing but letters is echoed: no numbers
        ("Ada\u2028Bcc", "Ada\u2028Bcc", "there"),  # a line separator is not a space
        ("Ada. URGENT: verify at https://evil.example/login now", "Ada Lovelace", "Ada Lovelace"),
        ("Ada URGENT verify now please", "Ada URGENT verify now please", "there"),  # > 3 words
        ("x <evil@attacker.example>, y", "x <evil@attacker.example>, y", "there"),
        ("=?utf-8?q?Ada?=", "=?utf-8?q?Ada?= Lovelace", "there"),
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


def test_markup_in_a_name_is_never_echoed_and_what_is_echoed_is_escaped() -> None:
    nasty = '<script>alert("x")</script>'
    message = compose_welcome(event(given_name=nasty, name=f"{nasty} & Co"), BRAND)
    text, html = bodies(message)
    assert "<script>" not in html and "script" not in text
    assert text.startswith("Hi there,") and "Hi there," in html
    text, html = bodies(compose_welcome(event(given_name="O'Brien"), BRAND))
    assert "Hi O&#39;Brien," in html  # autoescaped
    assert "Hi O'Brien," in text  # plain text is not HTML: no entities there


def test_an_address_that_cannot_be_a_header_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentFailure):
        compose_welcome(event(email="ada@example.com\r\nBcc: all@example.com"), BRAND)


# --- mail injection (security issue 16) -----------------------------------------------


def carrying(field: str, payload: str) -> UserRegistered:
    """An event as a sign-up made before names were checked would have written it."""
    if field == "given_name":
        return event(given_name=payload, name=f"{payload} Lovelace")
    if field == "family_name":
        return event(family_name=payload, name=f"Ada {payload}")
    return event(given_name=None, family_name=None, name=payload)  # Auth0's full name


@pytest.mark.parametrize("field", ["given_name", "family_name", "name"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_no_name_reaches_a_header_of_the_welcome_email(attack: str, field: str) -> None:
    message = compose_welcome(carrying(field, ATTACKS[attack]), BRAND)
    greeting = "Ada" if field == "family_name" else "there"  # the given name, when it is fit
    assert extract_recipients(message) == ["ada@example.com"]  # aiosmtplib's envelope
    for utf8, cte_type in ((False, "8bit"), (True, "8bit"), (False, "7bit")):
        raw = flatten_message(message, utf8=utf8, cte_type=cte_type)
        assert_only_what_we_wrote(
            raw, "ada@example.com", site_url=BRAND.site_url, greeting=greeting
        )


def test_a_fit_name_is_still_greeted_on_the_wire() -> None:
    raw = flatten_message(compose_welcome(event(given_name="Zo\u00eb"), BRAND), utf8=True)
    assert_only_what_we_wrote(raw, "ada@example.com", site_url=BRAND.site_url, greeting="Zo\u00eb")


_FRAGMENTS = st.sampled_from(
    ["=?", "?=", "utf-8", "UTF-8", "?b?", "?Q?", "QWRhDQpCY2M6", "=0D=0A", "\r\n", "\n", "\r",
     "Bcc:", "To:", " ", "\t", "<", ">", "@", ",", ";", '"', "evil", "attacker.example", "\u2028"]
)  # fmt: skip
_NAMES = st.one_of(st.none(), st.text(max_size=120), st.lists(_FRAGMENTS).map("".join))


@given(_NAMES, _NAMES, _NAMES)
def test_whatever_the_names_the_wire_form_is_the_one_written(
    given_name: str | None, family_name: str | None, name: str | None
) -> None:
    e = event(given_name=given_name, family_name=family_name, name=name or "Ada")
    message = compose_welcome(e, BRAND)
    assert extract_recipients(message) == ["ada@example.com"]
    raw = flatten_message(message)
    assert sorted(wire_header_names(raw)) == WELCOME_HEADERS
    assert b"\r\nTo: ada@example.com\r\n" in b"\r\n" + raw
    greeting = greeting_name(e)
    # Letters and the combining marks that Indic and other scripts write names with
    # (U+093A, found by Hypothesis), nothing else.
    assert greeting == "there" or all(
        ch.isalpha()
        or unicodedata.category(ch).startswith("M")
        or ch in " '\u2019\u02bc-\u2010\u2011."
        for ch in greeting
    )


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com\r\nBcc: all@example.com",
        "ada@example.com\nBcc: all@example.com",
        "=?utf-8?b?QWRhDQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?=@example.com",
        "ada@=?utf-8?q?example.com?=",
        "ada@example.com, evil@attacker.example",
        "Ada <ada@example.com>",
        '"ada lovelace"@example.com',
        "ada@example.com\u2028",
        "ada@@example.com",
        "ada(comment)@example.com",
        "j\u00f6rg@example.com",  # a non-ASCII local part cannot be written in a header here
    ],
)
def test_an_address_that_is_not_one_plain_address_is_a_permanent_failure(email: str) -> None:
    with pytest.raises(PermanentFailure, match="cannot address"):
        compose_welcome(event(email=email), BRAND)


def test_an_international_domain_is_still_addressed() -> None:
    message = compose_welcome(event(email="ada@b\u00fccher.example"), BRAND)
    assert extract_recipients(message) == ["ada@b\u00fccher.example"]
    assert sorted(wire_header_names(flatten_message(message, utf8=True))) == WELCOME_HEADERS


def test_the_wire_check_refuses_what_this_python_would_fold_into_structure() -> None:
    # How the welcome e-mail was addressed before issue 16: the name as display name.
    # This Python decodes the encoded-word and writes the CR LF it carries as is.
    message = compose_welcome(event(), BRAND)
    del message["To"]
    message["To"] = Address(display_name=ATTACKS["b-given-report"], addr_spec="ada@example.com")
    with pytest.raises(PermanentFailure):
        check_wire_form(message, "ada@example.com")


@pytest.mark.parametrize(
    ("header", "value"),
    [("Bcc", "evil@attacker.example"), ("Reply-To", "evil@attacker.example"), ("X-Injected", "1")],
)
def test_the_wire_check_refuses_any_header_we_did_not_write(header: str, value: str) -> None:
    message = compose_welcome(event(), BRAND)
    check_wire_form(message, "ada@example.com")
    message[header] = value
    with pytest.raises(PermanentFailure, match="headers are not the ones written"):
        check_wire_form(message, "ada@example.com")


def test_the_wire_check_refuses_a_second_recipient_in_the_one_to_header() -> None:
    message = compose_welcome(event(), BRAND)
    message.replace_header("To", "ada@example.com, evil@attacker.example")
    with pytest.raises(PermanentFailure, match="one recipient"):
        check_wire_form(message, "ada@example.com")


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
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert topology.retry_arguments(5000) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "signup.welcome-email",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert topology.dead_arguments() == {"x-queue-type": "quorum"}
    assert [name for name, _ in topology.declarations()] == [
        "signup.welcome-email.dead",
        *topology.retry_queues,
        "signup.welcome-email",
    ]


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
