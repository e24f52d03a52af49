"""Screenshots of the page for docs/screenshots/: empty, error and success, desktop and phone.

The e-mail addresses are fixed (each session starts with an empty database), so that the
pictures only change when the page does.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from .conftest import Server
from .helpers import DESKTOP, PHONE, SCREENSHOTS, fill_form, open_form

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

PEOPLE = {
    "desktop": ("ada.lovelace@example.com", "Ada", "Lovelace"),
    "phone": ("grace.hopper@example.com", "Grace", "Hopper"),
}


@pytest.mark.parametrize("device", ["desktop", "phone"])
async def test_screenshots(browser: Browser, server: Server, device: str) -> None:
    viewport = DESKTOP if device == "desktop" else PHONE
    context = await browser.new_context(
        viewport=viewport,
        device_scale_factor=1,
        base_url=server.base_url,
        locale="en-GB",
        reduced_motion="reduce",
    )
    try:
        page = await context.new_page()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await open_form(page)
        await page.screenshot(path=SCREENSHOTS / f"signup-empty-{device}.png", full_page=True)

        email, given, family = PEOPLE[device]
        await fill_form(page, "ada@@example.com", "password123", given, family)
        await page.get_by_role("button", name="Create account").click()
        await expect(page.locator("#email-error")).not_to_be_empty()
        await page.screenshot(path=SCREENSHOTS / f"signup-error-{device}.png", full_page=True)

        await fill_form(page, email, "correct horse battery staple", given, family)
        await page.get_by_role("button", name="Create account").click()
        await expect(page.locator("#signup-success")).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / f"signup-success-{device}.png", full_page=True)
    finally:
        await context.close()
