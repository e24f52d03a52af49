"""Enumeration-safe mode tells the real owner, end to end: the web app (local provider,
SQLite) → the outbox → the relay → real RabbitMQ → the welcome-e-mail worker → a real
SMTP server. At most one notice an hour, with nothing in it the person who typed the
form chose."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractQueue
from pydantic import SecretStr
from worker_fixtures import Broker, SmtpSink, broker, smtp, sqlite_url, wait_for, worker

from signup.adapters.database import migrate
from signup.settings import Settings
from signup.testing.auth0_standin import running_standin
from signup.testing.server import serving

__all__ = ["broker", "smtp", "sqlite_url"]  # fixtures

PASSWORD = "violet tractor anthem"
MALLORY = {
    "email": "ada@example.com",
    "password": "mallory tries a password",
    "given_name": "Mallory",
    "family_name": "Visit evil dot example",
}


def settings_for(broker: Broker, sqlite_url: str, smtp: SmtpSink, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": sqlite_url,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "mail_from": "hello@brand.test",
        "site_name": "Test Brand",
        "site_url": "https://brand.test",
        "sign_in_url": "https://brand.test/login",
        "hide_existing_accounts": True,
        "rate_limit_per_ip": "",
        "rate_limit_per_email": "",
        "relay_poll_seconds": 0.2,
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
    }
    return broker.settings(**{**values, **more})


async def apart(settings: Settings, tmp_path: Path) -> Settings:
    """The worker's own database (its processed ids), as a deployment's worker may have:
    the web app's writer and the worker's then never wait on one SQLite file's lock."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    await asyncio.to_thread(migrate, url)
    return settings.model_copy(update={"database_url": url})


def text_of(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()) + str(html.get_content())


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], language: str | None = None
) -> tuple[int, Any]:
    headers = {"Accept-Language": language} if language else {}
    async with http.post(f"{url}/user/signup", json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_the_owner_is_told_once_an_hour_and_learns_nothing_the_stranger_typed(
    broker: Broker, sqlite_url: str, smtp: SmtpSink, tmp_path: Path
) -> None:
    settings = settings_for(broker, sqlite_url, smtp)
    async with (
        worker(broker, "welcome-email", await apart(settings, tmp_path)) as consumer,
        serving(settings) as url,
        aiohttp.ClientSession() as http,
    ):
        owner = await post(http, url, {"email": "ada@example.com", "password": PASSWORD})
        await wait_for(lambda: len(smtp.received) == 1, what="the welcome e-mail")
        tries = [await post(http, url, MALLORY) for _ in range(3)]
        await wait_for(lambda: len(smtp.received) == 2, what="the owner's notice")
        await asyncio.sleep(1.5)  # the relay polls every 0.2 s: more would have come
        processed = consumer.stats.processed
    assert owner[0] == 201
    for status, body in tries:  # answered as a new sign-up, as before
        assert status == 201 and set(body) == {"user_id", "email"}
        assert body["user_id"] != owner[1]["user_id"]
    assert len(smtp.received) == 2 and processed == 2, "one notice for three tries"
    mail_from, recipients, notice = smtp.received[1]
    assert (mail_from, recipients) == ("hello@brand.test", ["ada@example.com"])
    assert notice["Subject"] == "Someone tried to create a Test Brand account with your address"
    assert notice["To"] == "ada@example.com"
    body = text_of(notice)
    assert "sign in, or reset your password" in body and "https://brand.test/login" in body
    assert "If it was not you" in body
    for typed in ("Mallory", "evil", MALLORY["password"]):
        assert typed not in notice.as_string()
    welcome = smtp.received[0][2]
    assert notice["Message-ID"] != welcome["Message-ID"]


async def test_without_hidden_accounts_a_taken_address_is_409_and_nobody_is_told(
    broker: Broker, sqlite_url: str, smtp: SmtpSink, tmp_path: Path
) -> None:
    settings = settings_for(broker, sqlite_url, smtp, hide_existing_accounts=False)
    async with (
        worker(broker, "welcome-email", await apart(settings, tmp_path)),
        serving(settings) as url,
        aiohttp.ClientSession() as http,
    ):
        await post(http, url, {"email": "ada@example.com", "password": PASSWORD})
        await wait_for(lambda: len(smtp.received) == 1, what="the welcome e-mail")
        status, _ = await post(http, url, MALLORY)
        await asyncio.sleep(1.5)
    assert status == 409
    assert len(smtp.received) == 1


async def test_with_auth0_the_notice_names_the_auth0_account(
    make_settings: Callable[..., Settings],
    bound_queue: AbstractQueue,
    amqp_url: str,
    exchange_name: str,
) -> None:
    """Auth0 keeps the accounts: the owner's user id is looked up, once the hour allows."""
    connection = await aio_pika.connect(amqp_url)
    async with connection, running_standin() as standin:
        channel = await connection.channel()
        exchange = await channel.get_exchange(exchange_name)
        notices = await channel.declare_queue(exclusive=True)
        await notices.bind(exchange, "user.signup_attempted")
        settings = make_settings(
            hide_existing_accounts=True,
            identity_provider="auth0",
            auth0_domain=standin.domain,
            auth0_client_id=standin.client_id,
            auth0_client_secret=SecretStr(standin.client_secret),
            auth0_base_url=standin.url,
        )
        async with serving(settings) as url, aiohttp.ClientSession() as http:
            status, owner = await post(
                http, url, {"email": "ada@example.com", "password": PASSWORD}
            )
            answers = [await post(http, url, MALLORY, "de-AT, en;q=0.5") for _ in range(2)]
            message = None
            for _ in range(100):  # basic.get does not wait: poll while the relay works
                message = await notices.get(fail=False)
                if message is not None:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            more = await notices.get(fail=False)
    assert status == 201 and [s for s, _ in answers] == [201, 201]
    assert message is not None and more is None
    event = orjson.loads(message.body)
    assert message.routing_key == "user.signup_attempted"
    assert message.message_id == event["id"] and message.type == "user.signup_attempted"
    assert event["type"] == "user.signup_attempted"
    assert event["data"]["user_id"] == owner["user_id"] and owner["user_id"].startswith("auth0|")
    assert set(event["data"]) == {"user_id", "email", "attempted_at", "language"}
    assert event["data"]["language"] == "de"  # the attempt's: the notice is in German
