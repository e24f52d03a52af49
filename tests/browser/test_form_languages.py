"""A site's form in a real browser, in English and German: a required select, an optional
date, a required terms consent and an optional marketing consent. Labels, errors tied to
their fields, a keyboard-only sign-up whose event carries the values and the consent
record of the language shown, axe, and screenshots for docs/form.md."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect

from .conftest import PageProblems, Server, start_server
from .helpers import AMQP_URL, DESKTOP, SCREENSHOTS, next_event_for
from .test_accessibility import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

DEFINITION = """
[[fields]]
name = "role"
type = "select"
required = true
label = { en = "Your role", de = "Ihre Rolle" }
options = [
  { value = "developer", label = { en = "Developer", de = "Entwicklung" } },
  { value = "manager", label = { en = "Manager", de = "Leitung" } },
]

[[fields]]
name = "birthday"
type = "date"
required = false
label = { en = "Birthday", de = "Geburtstag" }

[[consents]]
id = "terms"
version = "2026-12-01"
required = true
text = { en = "I accept the terms of service.", de = "Ich akzeptiere die Nutzungsbedingungen." }

[[consents]]
id = "marketing"
version = "1"
required = false
text.en = "Send me news about Naked Coders products."
text.de = "Schickt mir Neuigkeiten zu Produkten von Naked Coders."
"""

WORDS = {
    "en": {
        "role": "Your role",
        "option": "Manager",
        "birthday": "Birthday",
        "terms": "I accept the terms of service.",
        "marketing": "Send me news about Naked Coders products.",
        "email": "E-mail address",
        "submit": "Create account",
        "welcome": "Welcome to Naked Coders, Ada!",
    },
    "de": {
        "role": "Ihre Rolle",
        "option": "Leitung",
        "birthday": "Geburtstag",
        "terms": "Ich akzeptiere die Nutzungsbedingungen.",
        "marketing": "Schickt mir Neuigkeiten zu Produkten von Naked Coders.",
        "email": "E-Mail-Adresse",
        "submit": "Konto erstellen",
        "welcome": "Willkommen bei Naked Coders, Ada!",
    },
}
LOCALES = {"en": "en-GB", "de": "de-DE"}


@pytest.fixture(scope="module")
def form_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("signup-form")
    definition = Path(workdir) / "form.toml"
    definition.write_text(DEFINITION, encoding="utf-8")
    with start_server(workdir, {"SIGNUP_FORM_FILE": str(definition)}) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="session")
async def user_new(form_server: Server) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            form_server.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="user.new")
        yield queue


async def _page(browser: Browser, server: Server, language: str) -> tuple[Page, PageProblems]:
    context = await browser.new_context(
        viewport=DESKTOP,
        base_url=server.base_url,
        locale=LOCALES[language],
        device_scale_factor=1,
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    problems = PageProblems()
    page = await context.new_page()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    await page.goto("/signup")
    await page.locator("#password-toggle").wait_for(state="visible")
    return page, problems


async def _close(page: Page, problems: PageProblems) -> None:
    await page.context.close()
    assert not problems.errors, "\n".join(problems.errors)


async def _tab_to(page: Page, target: Locator, most: int = 20) -> None:
    """Press Tab until `target` has the focus (the keyboard alone)."""
    handle = await target.element_handle()
    for _ in range(most):
        if await page.evaluate("(el) => document.activeElement === el", handle):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {target}")


@pytest.mark.parametrize("language", ["en", "de"])
async def test_the_declared_fields_are_labelled_in_the_language_shown(
    browser: Browser, form_server: Server, language: str
) -> None:
    words = WORDS[language]
    page, problems = await _page(browser, form_server, language)
    try:
        role = page.get_by_label(words["role"])
        await expect(role).to_have_role("combobox")
        await expect(role).to_have_attribute("required", "")
        placeholder = {"en": "Choose…", "de": "Bitte wählen…"}[language]
        await expect(role.locator("option").first).to_have_text(placeholder)
        await expect(page.get_by_label(words["birthday"])).to_have_attribute("type", "date")
        terms = page.get_by_role("checkbox", name=words["terms"])
        await expect(terms).to_have_attribute("required", "")
        await expect(page.get_by_role("checkbox", name=words["marketing"])).not_to_be_checked()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(
            path=SCREENSHOTS / f"form-{language}-empty-desktop.png", full_page=True
        )
        violations = await axe_violations(page)
        assert not violations, describe(violations)
    finally:
        await _close(page, problems)


@pytest.mark.parametrize("language", ["en", "de"])
async def test_missing_choices_are_errors_on_their_own_fields(
    browser: Browser, form_server: Server, language: str
) -> None:
    words = WORDS[language]
    page, problems = await _page(browser, form_server, language)
    try:
        await page.get_by_label(words["email"]).fill(f"missing.{language}@example.com")
        await page.locator("#password").fill("correct horse battery staple")
        await page.get_by_role("button", name=words["submit"]).click()
        for control in (
            page.get_by_label(words["role"]),
            page.get_by_role("checkbox", name=words["terms"]),
        ):
            await expect(control).to_have_attribute("aria-invalid", "true")
            await expect(control).to_have_accessible_description(_said(language))
        # The optional ones are not at fault.
        await expect(page.get_by_label(words["birthday"])).not_to_have_attribute(
            "aria-invalid", "true"
        )
        await page.screenshot(
            path=SCREENSHOTS / f"form-{language}-error-desktop.png", full_page=True
        )
        violations = await axe_violations(page)
        assert not violations, describe(violations)
    finally:
        await _close(page, problems)


def _said(language: str) -> re.Pattern[str]:
    """Some words, in the language shown (German ones have none of the English)."""
    if language == "de":
        return re.compile(r"^(?!.*\b(This|Please|field|required)\b).+", re.S)
    return re.compile(r".+", re.S)


@pytest.mark.parametrize("language", ["en", "de"])
async def test_keyboard_alone_signs_up_and_records_the_consent_shown(
    browser: Browser,
    form_server: Server,
    user_new: aio_pika.abc.AbstractQueue,
    language: str,
) -> None:
    words = WORDS[language]
    address = f"ada.{language}@example.com"
    page, problems = await _page(browser, form_server, language)
    try:
        keys = page.keyboard
        await _tab_to(page, page.locator("#email"))
        await keys.type(address)
        await _tab_to(page, page.locator("#password"))
        await keys.type("correct horse battery staple")
        await _tab_to(page, page.locator("#given_name"))
        await keys.type("Ada")
        role = page.get_by_label(words["role"])
        await _tab_to(page, role)
        await keys.type(words["option"][:3])  # a closed select picks by its first letters
        await expect(role).to_have_value("manager")
        birthday = page.get_by_label(words["birthday"])
        await _tab_to(page, birthday)
        # Headless Chromium orders a date's parts as en-US does, whatever the locale.
        await keys.type("12311990")
        await expect(birthday).to_have_value("1990-12-31")
        terms = page.get_by_role("checkbox", name=words["terms"])
        await _tab_to(page, terms)
        await keys.press("Space")
        await expect(terms).to_be_checked()
        submit = page.get_by_role("button", name=words["submit"])
        await _tab_to(page, submit)
        await keys.press("Enter")
        await expect(page.locator("#success-title")).to_have_text(words["welcome"])
        await page.screenshot(
            path=SCREENSHOTS / f"form-{language}-success-desktop.png", full_page=True
        )
    finally:
        await _close(page, problems)

    _, event = await next_event_for(user_new, address)
    data = event["data"]
    assert data["language"] == language
    assert data["fields"] == {"role": "manager", "birthday": "1990-12-31"}
    records = {record["id"]: record for record in data["consents"]}
    assert records["terms"]["accepted"] is True and records["marketing"]["accepted"] is False
    for consent in ("terms", "marketing"):
        shown = words[consent]
        assert records[consent]["language"] == language
        assert records[consent]["text_sha256"] == hashlib.sha256(shown.encode()).hexdigest()
    assert records["terms"]["version"] == "2026-12-01"
