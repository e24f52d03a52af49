"""axe-core (vendored, see AXE.md) finds no serious or critical problem on the page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from .helpers import AXE_JS, PHONE, fill_form, open_form, unique_email

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe violations on the page as it is now."""
    # Evaluated through the debugging protocol, so the page's CSP does not block it.
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    results: dict[str, Any] = await page.evaluate(
        """async () => await window.axe.run(document, {
            resultTypes: ['violations'],
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                            'wcag22aa', 'best-practice']},
        })"""
    )
    return [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = [", ".join(node["target"]) for node in v.get("nodes", [])]
        lines.append(f"{v['impact']}: {v['id']} ({v['help']}) at {targets}")
    return "\n".join(lines)


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_empty_form_has_no_serious_violations(page: Page, viewport: str) -> None:
    if viewport == "phone":
        await page.set_viewport_size(PHONE)
    await open_form(page)
    violations = await axe_violations(page)
    assert not violations, describe(violations)


async def test_error_state_has_no_serious_violations(page: Page) -> None:
    await open_form(page)
    await fill_form(page, "ada@@example.com", "password123", "Ada")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#email-error")).not_to_be_empty()
    violations = await axe_violations(page)
    assert not violations, describe(violations)


async def test_client_error_and_success_states_have_no_serious_violations(page: Page) -> None:
    await open_form(page)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#password-error")).not_to_be_empty()
    violations = await axe_violations(page)
    assert not violations, describe(violations)

    await fill_form(page, unique_email("axe"), "correct horse battery staple", "Ada")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signup-success")).to_be_visible()
    violations = await axe_violations(page)
    assert not violations, describe(violations)
