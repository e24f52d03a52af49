"""The welcome-e-mail worker end to end: RabbitMQ → worker → a real SMTP server."""

from __future__ import annotations

from email.message import EmailMessage

from mail_fixtures import ATTACKS, RawSmtpSink, assert_only_what_we_wrote, raw_smtp
from worker_fixtures import (
    AMQP_URL,
    Broker,
    SmtpSink,
    broker,
    free_port,
    make_event,
    smtp,
    sqlite_url,
    wait_for,
    worker,
)

from signup.adapters.consumer import list_dead_letters
from signup.settings import Settings

__all__ = ["broker", "raw_smtp", "smtp", "sqlite_url"]  # fixtures

NAME = "welcome-email"


def settings_for(broker: Broker, sqlite_url: str, smtp: SmtpSink) -> Settings:
    return broker.settings(
        database_url=sqlite_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        mail_from="hello@brand.test",
        site_name="Test Brand",
        site_url="https://brand.test/start",
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


async def test_welcome_email_is_sent_and_escapes_the_event(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    event = make_event(
        email="ada@example.com", given_name="O'Brien", family_name="Lovelace", name="O'Brien"
    )
    async with worker(broker, NAME, settings_for(broker, sqlite_url, smtp)) as consumer:
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == 1, what="the e-mail")

    assert len(smtp.received) == 1
    mail_from, recipients, message = smtp.received[0]
    assert mail_from == "hello@brand.test"
    assert recipients == ["ada@example.com"]
    assert message["Subject"] == "Welcome to Test Brand"
    assert message["Message-ID"] == f"<{event.id}@signup>"
    assert message["To"] == "ada@example.com"  # the bare address: no name in a header
    text, html = parts(message)
    assert "Hi O'Brien," in text
    assert "https://brand.test/start" in text
    assert "Hi O&#39;Brien," in html
    assert 'href="https://brand.test/start"' in html
    assert "Test Brand" in html


async def test_greeting_falls_back_to_the_name(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    event = make_event(given_name=None, family_name=None, name="Grace Hopper")
    async with worker(broker, NAME, settings_for(broker, sqlite_url, smtp)) as consumer:
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == 1, what="the e-mail")
    text, html = parts(smtp.received[0][2])
    assert "Hi Grace Hopper," in text
    assert "Hi Grace Hopper," in html


async def test_duplicate_delivery_sends_one_email(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    event = make_event()
    async with worker(broker, NAME, settings_for(broker, sqlite_url, smtp)) as consumer:
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == 1, what="the e-mail")
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.duplicates_skipped == 1, what="the duplicate")
    assert len(smtp.received) == 1


async def test_a_refused_recipient_is_parked_not_retried(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    smtp.refuse["nobody@example.com"] = "550 5.1.1 no such mailbox"
    refused, fine = make_event(email="nobody@example.com"), make_event(email="ok@example.com")
    async with worker(broker, NAME, settings_for(broker, sqlite_url, smtp)) as consumer:
        await broker.publish_event(refused)
        await broker.publish_event(fine)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="parking")
        await wait_for(lambda: consumer.stats.processed == 1, what="the other e-mail")
        letters, _ = await list_dead_letters(AMQP_URL, consumer.topology)
    assert consumer.stats.retried == 0
    assert [r for _, r, _ in smtp.received] == [["ok@example.com"]]
    assert letters[0].event_id == refused.id
    assert "550" in letters[0].reason
    assert letters[0].attempts == 1


async def test_a_deferring_server_is_retried(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    smtp.defer_times = 2  # 451 twice, then accepted
    async with worker(broker, NAME, settings_for(broker, sqlite_url, smtp)) as consumer:
        await broker.publish_event(make_event())
        await wait_for(lambda: consumer.stats.processed == 1, what="the e-mail")
    assert consumer.stats.retried == 2
    assert len(smtp.received) == 1


async def test_an_unreachable_server_is_retried_then_parked(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(broker, sqlite_url, smtp).model_copy(
        update={"smtp_port": free_port(), "smtp_timeout_seconds": 2.0}
    )
    event = make_event()
    async with worker(broker, NAME, settings) as consumer:
        await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="parking")
        letters, _ = await list_dead_letters(AMQP_URL, consumer.topology)
    assert consumer.stats.retried == 2
    assert letters[0].event_id == event.id
    assert letters[0].reason.startswith("gave up after 3 attempts: SMTP")


async def test_names_from_events_written_before_the_fix_never_reach_a_header(
    broker: Broker, sqlite_url: str, raw_smtp: RawSmtpSink
) -> None:
    """Security issue 16: b, q, nested and list-shaped names, as old events carry them."""
    cases = [
        ("b-given-report", {"given_name": ATTACKS["b-given-report"], "family_name": None}),
        ("b-family-report", {"given_name": None, "family_name": ATTACKS["b-family-report"]}),
        ("q", {"given_name": ATTACKS["q"], "family_name": "Lovelace"}),
        ("nested-b-of-q", {"given_name": None, "family_name": None}),
        ("list-display-name", {"given_name": None, "family_name": None}),
        ("spam-link", {"given_name": ATTACKS["spam-link"], "family_name": None}),
    ]
    events = {}
    for index, (attack, names) in enumerate(cases):
        parts_of_name = [n for n in (names["given_name"], names["family_name"]) if n]
        full = " ".join(parts_of_name) or ATTACKS[attack]  # the full name alone, as Auth0's
        email = f"victim{index}@example.com"
        events[email] = make_event(email=email, name=full, **names)
    async with worker(broker, NAME, settings_for(broker, sqlite_url, raw_smtp)) as consumer:
        for event in events.values():
            await broker.publish_event(event)
        await wait_for(lambda: consumer.stats.processed == len(events), what="the e-mails")
    assert consumer.stats.dead_lettered == 0
    assert sorted(r for _, [r], _ in raw_smtp.raw) == sorted(events)  # one recipient each
    for mail_from, recipients, raw in raw_smtp.raw:
        assert mail_from == "hello@brand.test"
        assert_only_what_we_wrote(raw, recipients[0], site_url="https://brand.test/start")
