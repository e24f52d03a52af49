"""The page and the verification page in German (and English) in a real browser: the
words, errors tied to their fields, keyboard-only use, axe, screenshots for docs/."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from signup.domain.verification import make_token

from .conftest import PageProblems, Server, start_server
from .helpers import AMQP_URL, DESKTOP, SCREENSHOTS, active_id, next_event_for
from .test_accessibility import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

KEY = "browser-test-verification-key-0123456789"
GOOD_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def de_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SIGNUP_VERIFY_KEY": KEY, "SIGNUP_SIGN_IN_URL": "/login"}
    with start_server(tmp_path_factory.mktemp("signup-de"), env) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="session")
async def german(browser: Browser, de_server: Server) -> AsyncIterator[Page]:
    """A page of a German browser (`Accept-Language: de-DE`); fails on any page error."""
    context: BrowserContext = await browser.new_context(
        viewport=DESKTOP,
        base_url=de_server.base_url,
        locale="de-DE",
        device_scale_factor=1,
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    problems = PageProblems()
    page = await context.new_page()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    try:
        yield page
    finally:
        await context.close()
    assert not problems.errors, "\n".join(problems.errors)


async def _open(page: Page, path: str = "/signup") -> None:
    await page.goto(path)
    await page.locator("#password-toggle").wait_for(state="visible")


async def test_the_page_speaks_the_browsers_language(german: Page) -> None:
    await _open(german)
    assert await german.evaluate("() => document.documentElement.lang") == "de"
    assert await german.title() == "Konto erstellen · Naked Coders"
    await expect(german.get_by_label("E-Mail-Adresse")).to_have_id("email")
    password = german.get_by_role("textbox", name="Passwort", exact=True)
    await expect(password).to_have_id("password")
    await expect(password).to_have_accessible_description(
        re.compile(r"^Mindestens 8 Zeichen; ein paar Wörter, die nichts miteinander zu tun haben")
    )
    await expect(german.get_by_label("Vorname")).to_have_id("given_name")
    await expect(german.get_by_label("Nachname")).to_have_id("family_name")
    await expect(german.get_by_role("button", name="Anzeigen Passwort")).to_be_visible()
    await expect(german.get_by_role("button", name="Konto erstellen")).to_be_visible()
    await expect(german.get_by_role("link", name="Anmelden")).to_have_attribute("href", "/login")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await german.screenshot(path=SCREENSHOTS / "signup-de-empty-desktop.png", full_page=True)
    violations = await axe_violations(german)
    assert not violations, describe(violations)

    # ?lang= wins over the browser's language.
    await _open(german, "/signup?lang=en")
    assert await german.evaluate("() => document.documentElement.lang") == "en"
    await expect(german.get_by_role("button", name="Create account")).to_be_visible()


async def test_errors_are_german_and_tied_to_their_fields(german: Page) -> None:
    await _open(german)
    submit = german.get_by_role("button", name="Konto erstellen")
    await submit.click()  # nothing filled in: the script's own checks, in German
    email = german.locator("#email")
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(german.locator("#email-error")).to_have_text("Geben Sie Ihre E-Mail-Adresse ein.")
    assert "email-error" in (await email.get_attribute("aria-describedby") or "")
    await expect(german.locator("#password-error")).to_have_text("Wählen Sie ein Passwort.")
    await expect(german.locator("#form-status")).to_have_text(
        "Bitte korrigieren Sie die 2 markierten Felder."
    )
    await expect(email).to_be_focused()

    # The server's refusal, translated by its code, next to the password.
    await email.fill("grace.hopper@example.com")
    await german.fill("#password", "password")
    async with german.expect_response(lambda r: r.url.endswith("/user/signup")) as answer:
        await submit.click()
    response = await answer.value
    assert response.status == 422
    assert response.request.headers.get("accept-language") == "de"
    body = await response.json()
    assert body["errors"][0]["code"] == "password.too_common"
    await expect(german.locator("#password-error")).to_have_text(
        "Dieses Passwort ist zu verbreitet und leicht zu erraten: "
        "Wählen Sie ein längeres, weniger übliches."
    )
    await expect(german.locator("#password")).to_have_attribute("aria-invalid", "true")
    await german.screenshot(path=SCREENSHOTS / "signup-de-error-desktop.png", full_page=True)
    violations = await axe_violations(german)
    assert not violations, describe(violations)


@pytest_asyncio.fixture(loop_scope="session")
async def user_new(de_server: Server) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            de_server.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="user.new")
        yield queue


async def test_keyboard_alone_signs_up_in_german_and_verifies(
    german: Page, user_new: aio_pika.abc.AbstractQueue
) -> None:
    address = "ada.lovelace@example.com"  # fixed: the screenshots change only with the page
    await _open(german)
    for _ in range(8):
        await german.keyboard.press("Tab")
        if await active_id(german) == "email":
            break
    assert await active_id(german) == "email"
    await german.keyboard.type(address)
    await german.keyboard.press("Tab")
    await german.keyboard.type(GOOD_PASSWORD)
    await german.keyboard.press("Tab")  # the show/hide button
    await german.keyboard.press("Tab")
    assert await active_id(german) == "given_name"
    await german.keyboard.type("Ada")
    await german.keyboard.press("Enter")
    heading = german.locator("#success-title")
    await expect(heading).to_have_text("Willkommen bei Naked Coders, Ada!")
    await expect(heading).to_be_focused()
    await expect(german.locator("#signup-success")).to_contain_text(
        f"Ihr Konto für {address} ist eingerichtet."
    )
    await german.screenshot(path=SCREENSHOTS / "signup-de-success-desktop.png", full_page=True)

    _, event = await next_event_for(user_new, address)
    assert event["data"]["language"] == "de"

    # The welcome e-mail's link (made here with the server's key), opened in German.
    token = make_token(
        KEY.encode(), event["data"]["user_id"], datetime.now(UTC) + timedelta(days=1)
    )
    response = await german.goto(f"/signup/verify?token={token}&lang=de")
    assert response is not None and response.status == 200
    await expect(german.get_by_role("heading", level=1)).to_have_text(
        "Ihre E-Mail-Adresse ist bestätigt"
    )
    # On to the site's sign-in (SIGNUP_SIGN_IN_URL).
    await expect(german.locator("#verify-panel").get_by_role("link")).to_have_attribute(
        "href", "/login"
    )
    await expect(german.locator("#verify-panel").get_by_role("link")).to_have_text("Anmelden")
    await german.screenshot(path=SCREENSHOTS / "verify-de-desktop.png", full_page=True)
    violations = await axe_violations(german)
    assert not violations, describe(violations)

    again = await german.goto(f"/signup/verify?token={token}&lang=en")
    assert again is not None and again.status == 410
    await expect(german.get_by_role("heading", level=1)).to_have_text("This link was already used")
    await german.screenshot(path=SCREENSHOTS / "verify-used-en-desktop.png", full_page=True)
    violations = await axe_violations(german)
    assert not violations, describe(violations)
    assert json.dumps(event)  # the event itself is plain JSON
