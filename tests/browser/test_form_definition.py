"""The site's form (SIGNUP_FORM_FILE) in a real browser: the declared fields and consents
are labelled controls, the server's errors land beside them, and the keyboard alone
completes a sign-up whose values reach the server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from .conftest import PageProblems, Server, start_server
from .helpers import DESKTOP, active_id, fill_form, unique_email
from .test_accessibility import axe_violations, describe

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "form.example.toml"
GOOD_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def form_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SIGNUP_FORM_FILE": str(EXAMPLE)}
    with start_server(tmp_path_factory.mktemp("signup-form"), env) as srv:
        yield srv


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, form_server: Server) -> AsyncIterator[Page]:
    context: BrowserContext = await browser.new_context(
        viewport=DESKTOP, base_url=form_server.base_url, locale="en-GB", reduced_motion="reduce"
    )
    context.set_default_timeout(10_000)
    problems = PageProblems()
    tab = await context.new_page()
    tab.on("console", problems.console)
    tab.on("pageerror", problems.page_error)
    try:
        yield tab
    finally:
        await context.close()
    assert not problems.errors, "\n".join(problems.errors)


async def test_declared_controls_are_labelled_and_described(page: Page) -> None:
    await page.goto("/signup")
    await expect(page.get_by_label("Company")).to_have_attribute("id", "fields.company")
    await expect(page.get_by_label("Company")).to_have_accessible_description(
        re.compile(r"^Where you work, if you like\.")
    )
    await expect(page.get_by_role("combobox", name="Your role")).to_be_visible()
    await expect(page.get_by_label("Birthday")).to_have_attribute("type", "date")
    terms = page.get_by_role("checkbox", name="I accept the terms of service.")
    await expect(terms).to_have_attribute("id", "consents.terms")
    violations = await axe_violations(page)
    assert not violations, describe(violations)


async def test_errors_land_beside_the_fields_then_the_keyboard_signs_up(page: Page) -> None:
    await page.goto("/signup")
    await fill_form(page, unique_email("form"), GOOD_PASSWORD)
    await page.get_by_role("button", name="Create account").click()

    role = page.get_by_role("combobox", name="Your role")
    terms = page.get_by_role("checkbox", name="I accept the terms of service.")
    await expect(role).to_have_attribute("aria-invalid", "true")
    await expect(terms).to_have_attribute("aria-invalid", "true")
    await expect(terms).to_have_accessible_description(
        re.compile(r"Please accept this to continue\.")
    )
    assert await active_id(page) == "fields.role"  # the first field at fault
    violations = await axe_violations(page)  # errors shown: still none serious
    assert not violations, describe(violations)

    # Keyboard only: choose the role, tick the terms, send.
    await page.keyboard.press("ArrowDown")
    await expect(role).to_have_value("developer")
    await terms.focus()
    await page.keyboard.press("Space")
    await expect(terms).to_be_checked()
    # The page empties the password after a refusal: typed again.
    await page.locator("#password").focus()
    await page.keyboard.type(GOOD_PASSWORD)
    await page.get_by_role("button", name="Create account").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#signup-success")).to_be_visible()
