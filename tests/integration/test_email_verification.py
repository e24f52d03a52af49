"""Local e-mail verification end to end: the API, the relay, RabbitMQ, the welcome-e-mail
worker, a real SMTP server, and the link opened over HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import orjson
import pytest
from mail_fixtures import parts
from worker_fixtures import Broker, SmtpSink, broker, smtp, sqlite_url, wait_for, worker

from signup.domain.verification import make_token
from signup.entrypoints.web.guards import PAGE_CSP
from signup.settings import Settings
from signup.testing.server import serving

__all__ = ["broker", "smtp", "sqlite_url"]  # fixtures

KEY = "verification-key-of-the-test-0123456789"
PASSWORD = "violet tractor anthem"


def settings_for(broker: Broker, sqlite_url: str, smtp: SmtpSink, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": sqlite_url,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "site_name": "Test Brand",
        "site_url": "https://brand.test",
        "verify_key": KEY,
        "rate_limit_per_ip": "",
        "rate_limit_per_email": "",
        "relay_poll_seconds": 0.2,
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
    }
    return broker.settings(**{**values, **more})


@pytest.fixture
async def verified_queue(broker: Broker) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of the test's own bound to `user.verified` on the test's exchange."""
    exchange = await broker.channel.get_exchange(broker.exchange)
    queue = await broker.channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "user.verified")
    yield queue


async def _messages(queue: aio_pika.abc.AbstractQueue, settle: float = 1.0) -> list[Any]:
    """Every message in `queue` after the relay had `settle` seconds to send more."""
    await asyncio.sleep(settle)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


def _verified_in_db(sqlite_url: str, email: str) -> bool:
    path = sqlite_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        (verified,) = conn.execute(
            "SELECT email_verified FROM users WHERE email = ?", (email,)
        ).fetchone()
    return bool(verified)


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, dict[str, str]]:
    async with http.get(url, allow_redirects=False) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_the_welcome_emails_link_verifies_once_and_publishes_user_verified(
    broker: Broker,
    sqlite_url: str,
    smtp: SmtpSink,
    verified_queue: aio_pika.abc.AbstractQueue,
) -> None:
    settings = settings_for(broker, sqlite_url, smtp)
    async with (
        worker(broker, "welcome-email", settings) as consumer,
        serving(settings) as base,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{base}/user/signup",
            data=orjson.dumps({"email": "ada@example.com", "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 201
            user_id = (await response.json())["user_id"]
        await wait_for(lambda: consumer.stats.processed == 1, what="the welcome e-mail")

        text, html = parts(smtp.received[0][2])
        [link] = [line for line in text.splitlines() if "/signup/verify?" in line]
        assert link.startswith("https://brand.test/signup/verify?token=")
        assert f'href="{link}"' in html
        assert not _verified_in_db(sqlite_url, "ada@example.com")
        target = urlsplit(link)
        local = f"{base}{target.path}?{target.query}"

        status, page, headers = await _get(http, local)
        assert status == 200, page
        assert "Your e-mail address is confirmed" in page and "ada@example.com" in page
        assert headers["Content-Security-Policy"] == PAGE_CSP
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Type"].startswith("text/html")
        assert '<meta name="referrer" content="no-referrer">' in page
        assert _verified_in_db(sqlite_url, "ada@example.com")

        [message] = await _messages(verified_queue)
        assert message.routing_key == "user.verified" and message.type == "user.verified"
        assert message.content_type == "application/cloudevents+json"
        assert message.delivery_mode == 2 and message.app_id == "signup"
        event = orjson.loads(message.body)
        assert event["id"] == message.message_id and event["type"] == "user.verified"
        assert event["specversion"] == "1.0" and event["source"] == settings.event_source
        assert event["data"] == {
            "user_id": user_id,
            "email": "ada@example.com",
            "email_verified": True,
            "verified_at": event["time"],
            "identity_provider": "local",
        }

        # Used: a clear page, a 410, nothing written, no second event.
        status, page, headers = await _get(http, local)
        assert status == 410
        assert "This link was already used" in page
        assert headers["Content-Security-Policy"] == PAGE_CSP
        assert await _messages(verified_queue) == []


async def test_expired_forged_and_looked_at_links_change_nothing(
    broker: Broker,
    sqlite_url: str,
    smtp: SmtpSink,
    verified_queue: aio_pika.abc.AbstractQueue,
) -> None:
    settings = settings_for(broker, sqlite_url, smtp)
    async with serving(settings) as base, aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/user/signup",
            data=orjson.dumps({"email": "grace@example.com", "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        ) as response:
            user_id = (await response.json())["user_id"]
        past = datetime.now(UTC) - timedelta(seconds=1)
        later = datetime.now(UTC) + timedelta(days=1)
        expired = make_token(KEY.encode(), user_id, past)
        forged = make_token(b"another key of at least 32 bytes!!", user_id, later)
        good = make_token(KEY.encode(), user_id, later)

        status, page, _ = await _get(http, f"{base}/signup/verify?token={expired}")
        assert status == 410 and "This link has expired" in page
        for token in (forged, good[:-3], ""):
            status, page, headers = await _get(http, f"{base}/signup/verify?token={token}")
            assert status == 400 and "This link is not valid" in page
            assert headers["Content-Security-Policy"] == PAGE_CSP
        status, page, _ = await _get(http, f"{base}/signup/verify")
        assert status == 400
        async with http.head(f"{base}/signup/verify?token={good}") as response:
            assert response.status == 405  # looking at a link does not use it
        assert not _verified_in_db(sqlite_url, "grace@example.com")
        assert await _messages(verified_queue, settle=0.5) == []

        status, _, _ = await _get(http, f"{base}/signup/verify?token={good}")
        assert status == 200
        assert _verified_in_db(sqlite_url, "grace@example.com")


async def test_without_a_key_there_is_no_link_and_no_page(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(broker, sqlite_url, smtp, verify_key=None)
    async with (
        serving(settings) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/signup/verify?token=v1.a.1.b") as response,
    ):
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/problem+json")
