"""German over real HTTP, RabbitMQ and SMTP: field errors by code in the 422 body, the
page, and the welcome e-mail (with its verification link and page) of a German sign-up."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from mail_fixtures import parts
from worker_fixtures import Broker, SmtpSink, broker, smtp, sqlite_url, wait_for, worker

from signup.settings import Settings
from signup.testing.server import serving

__all__ = ["broker", "smtp", "sqlite_url"]  # fixtures

PASSWORD = "violet tractor anthem"


def settings_for(broker: Broker, sqlite_url: str, smtp: SmtpSink) -> Settings:
    return broker.settings(
        database_url=sqlite_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        site_name="Test Brand",
        site_url="https://brand.test",
        verify_key="verification-key-of-the-test-0123456789",
        rate_limit_per_ip="",
        rate_limit_per_email="",
        relay_poll_seconds=0.2,
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json", **headers}
    ) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize(
    ("query", "headers"),
    [("?lang=de", {}), ("", {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})],
)
async def test_field_errors_come_in_german_by_their_codes(
    broker: Broker, sqlite_url: str, smtp: SmtpSink, query: str, headers: dict[str, str]
) -> None:
    async with (
        serving(settings_for(broker, sqlite_url, smtp)) as base,
        aiohttp.ClientSession() as http,
    ):
        status, problem = await _post(
            http,
            f"{base}/user/signup{query}",
            {"email": "not an address", "password": "short", "given_name": "www.spam.example"},
            headers,
        )
        assert status == 422
        assert problem["detail"] == "Einige Felder müssen korrigiert werden."
        by_field = {e["field"]: e for e in problem["errors"]}
        assert by_field["email"]["code"] == "email.invalid"
        assert by_field["email"]["message"] == (
            "Geben Sie eine gültige E-Mail-Adresse ein, etwa name@example.com."
        )
        assert by_field["given_name"]["code"] == "given_name.link"
        assert by_field["given_name"]["message"] == "Ein Name enthält keine Links oder Webadressen."

        status, problem = await _post(
            http,
            f"{base}/user/signup{query}",
            {"email": "ada@example.com", "password": "x"},
            headers,
        )
        assert problem["errors"] == [
            {
                "field": "password",
                "message": "Verwenden Sie mindestens 8 Zeichen.",
                "code": "password.too_short",
            }
        ]
        # The same request in English keeps the English words.
        status, problem = await _post(
            http, f"{base}/user/signup?lang=en", {"email": "ada@example.com", "password": "x"}, {}
        )
        assert problem["errors"][0]["message"] == "Use at least 8 characters."

        async with http.get(f"{base}/signup", headers=headers or {"Accept-Language": "de"}) as page:
            html = await page.text()
            assert page.headers["Content-Language"] == "de"
            assert "Accept-Language" in page.headers["Vary"]
        assert '<html lang="de">' in html and 'action="/user/signup"' in html


async def test_a_german_sign_up_gets_a_german_welcome_email_and_page(
    broker: Broker, sqlite_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(broker, sqlite_url, smtp)
    async with (
        worker(broker, "welcome-email", settings) as consumer,
        serving(settings) as base,
        aiohttp.ClientSession() as http,
    ):
        status, answer = await _post(
            http,
            f"{base}/user/signup?lang=de",
            {"email": "ada@example.com", "password": PASSWORD, "given_name": "Ada"},
            {"Accept-Language": "en"},  # the page's language (?lang=) wins
        )
        assert status == 201, answer
        await wait_for(lambda: consumer.stats.processed == 1, what="the welcome e-mail")

        message = smtp.received[0][2]
        assert message["Subject"] == "Willkommen bei Test Brand"
        text, html = parts(message)
        assert text.replace("\r\n", "\n").startswith("Hallo Ada,\n\nwillkommen bei Test Brand!")
        assert "Ihr Konto für <strong>ada@example.com</strong> ist eingerichtet." in html
        [link] = [line for line in text.splitlines() if "/signup/verify?" in line]
        assert link.endswith("&lang=de")
        target = urlsplit(link)
        async with http.get(f"{base}{target.path}?{target.query}") as response:
            page = await response.text()
            assert response.status == 200
            assert response.headers["Content-Language"] == "de"
        assert '<html lang="de">' in page
        assert "Ihre E-Mail-Adresse ist bestätigt" in page
        assert "Danke: ada@example.com ist bestätigt." in page
