"""The sign-up page in a real browser against a real `signup serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import aio_pika
import pytest
from playwright.async_api import Page, Route, expect

from .conftest import Server
from .helpers import (
    PHONE,
    active_id,
    fill_form,
    next_event_for,
    open_form,
    record_signup_posts,
    unique_email,
)

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

GOOD_PASSWORD = "correct horse battery staple"


async def test_page_is_branded_and_has_no_inline_script_or_style(page: Page) -> None:
    response = await page.goto("/signup")
    assert response is not None and response.status == 200
    # The service's policy allows only its own files; the page fixture fails the test on
    # any refusal it reports.
    csp = await response.header_value("content-security-policy") or ""
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    assert "Naked Coders" in await page.title()
    await expect(page.locator(".brand__name")).to_have_text("Naked Coders")
    await expect(page.locator(".brand__logo")).to_be_visible()
    # Only external files from /static: the service's CSP refuses anything inline.
    inline = await page.evaluate(
        """() => ({
            scripts: [...document.scripts].filter(s => !s.src).length,
            styles: document.querySelectorAll('style').length,
            styleAttrs: document.querySelectorAll('[style]').length,
            handlers: [...document.querySelectorAll('*')].flatMap(
                el => [...el.attributes].filter(a => a.name.startsWith('on')).map(a => a.name)),
            foreign: [...document.querySelectorAll('[src],[href]')]
                .map(el => el.src || el.href)
                .filter(u => u && !u.startsWith(location.origin) && !u.startsWith('#')),
        })"""
    )
    assert inline == {"scripts": 0, "styles": 0, "styleAttrs": 0, "handlers": [], "foreign": []}
    # Root serves the same page.
    root = await page.goto("/")
    assert root is not None and root.status == 200
    await expect(page.locator("#signup-form")).to_be_visible()


async def test_fields_are_labelled_and_described(page: Page) -> None:
    await open_form(page)
    email = page.get_by_label("E-mail address")
    await expect(email).to_have_attribute("type", "email")
    await expect(email).to_have_attribute("autocomplete", "email")
    password = page.get_by_role("textbox", name="Password", exact=True)
    await expect(password).to_have_attribute("autocomplete", "new-password")
    await expect(password).to_have_accessible_description(
        re.compile(r"at least 8 characters; a few unrelated words work well", re.I)
    )
    await expect(page.get_by_label("Given name")).to_have_attribute("autocomplete", "given-name")
    await expect(page.get_by_label("Family name")).to_have_attribute("autocomplete", "family-name")
    await expect(page.locator("#form-status")).to_have_attribute("aria-live", "polite")

    toggle = page.get_by_role("button", name="Show password")
    await toggle.click()
    await expect(password).to_have_attribute("type", "text")
    await expect(page.get_by_role("button", name="Hide password")).to_be_visible()
    await page.get_by_role("button", name="Hide password").click()
    await expect(password).to_have_attribute("type", "password")


async def test_sign_up_shows_success_and_publishes_user_new(
    page: Page, server: Server, user_new_queue: aio_pika.abc.AbstractQueue
) -> None:
    email = unique_email("ada")
    await open_form(page)
    await fill_form(page, email, GOOD_PASSWORD, "Ada", "Lovelace")
    await page.get_by_role("button", name="Create account").click()

    success = page.locator("#signup-success")
    await expect(success).to_be_visible()
    await expect(page.locator("#signup-form")).to_be_hidden()
    heading = page.get_by_role("heading", name=re.compile(r"Welcome to Naked Coders, Ada"))
    await expect(heading).to_be_focused()
    await expect(success).to_contain_text(email)
    await expect(success).to_contain_text("Check your inbox")

    message, event = await next_event_for(user_new_queue, email)
    assert message.routing_key == "user.new"
    assert event["type"] == "user.new"
    assert event["data"]["email"] == email
    assert event["data"]["given_name"] == "Ada"
    assert event["data"]["family_name"] == "Lovelace"
    assert GOOD_PASSWORD not in message.body.decode()


async def test_client_side_checks_show_inline_and_send_nothing(page: Page) -> None:
    await open_form(page)
    posts = record_signup_posts(page)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#email-error")).to_have_text("Enter your e-mail address.")
    await expect(page.locator("#password-error")).to_have_text("Choose a password.")
    await expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#email")).to_be_focused()
    await expect(page.locator("#form-status")).to_contain_text("2 highlighted fields")

    await fill_form(page, "ada.example.com", "short", "Ada")
    await page.keyboard.press("Enter")
    await expect(page.locator("#email-error")).to_contain_text("name@example.com")
    await expect(page.locator("#password-error")).to_have_text("Use at least 8 characters.")
    await expect(page.locator("#email")).to_be_focused()
    await expect(page.get_by_label("E-mail address")).to_have_accessible_description(
        re.compile("name@example.com")
    )
    # Typing in a field clears its error.
    await page.fill("#email", "ada@example.com")
    await expect(page.locator("#email")).not_to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#email-error")).to_be_empty()
    assert posts == []


async def test_weak_password_is_refused_next_to_the_password(page: Page) -> None:
    email = unique_email("weak")
    await open_form(page)
    await fill_form(page, email, "password123", "Ada", "Lovelace")
    await page.get_by_role("button", name="Create account").click()

    error = page.locator("#password-error")
    await expect(error).to_have_text(re.compile(r"common|guess", re.I))
    password = page.locator("#password")
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(password).to_be_focused()
    await expect(password).to_have_value("")
    await expect(page.locator("#email")).to_have_value(email)
    await expect(page.locator("#email")).not_to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#given_name")).to_have_value("Ada")
    await expect(page.locator("#family_name")).to_have_value("Lovelace")
    described = page.get_by_role("textbox", name="Password", exact=True)
    await expect(described).to_have_accessible_description(re.compile(r"common|guess", re.I))
    await expect(page.get_by_role("button", name="Create account")).to_be_enabled()


async def test_malformed_email_is_refused_by_the_server_next_to_the_email(page: Page) -> None:
    await open_form(page)
    posts = record_signup_posts(page)
    # `ada@@example.com` passes the page's light check (something@something) and the
    # browser's own type=email check is off (novalidate), so the server judges it.
    await fill_form(page, "ada@@example.com", GOOD_PASSWORD, "Ada", "Lovelace")
    assert await page.evaluate("() => document.getElementById('signup-form').noValidate")
    async with page.expect_response(lambda r: r.url.endswith("/user/signup")) as answer:
        await page.get_by_role("button", name="Create account").click()
    response = await answer.value
    assert response.status == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert len(posts) == 1

    email = page.locator("#email")
    await expect(page.locator("#email-error")).not_to_be_empty()
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(email).to_be_focused()
    await expect(email).to_have_value("ada@@example.com")
    await expect(page.locator("#password")).to_have_value("")
    await expect(page.locator("#given_name")).to_have_value("Ada")
    await expect(page.locator("#family_name")).to_have_value("Lovelace")
    await expect(page.locator("#form-status")).to_contain_text("highlighted field")


async def test_already_registered_email_is_reported_on_the_email(page: Page) -> None:
    email = unique_email("taken")
    first = await page.request.post(
        "/user/signup",
        data=json.dumps({"email": email, "password": GOOD_PASSWORD}),
        headers={"Content-Type": "application/json"},
    )
    assert first.status == 201, await first.text()

    await open_form(page)
    await fill_form(page, email, "another long passphrase", "Grace", "Hopper")
    await page.get_by_role("button", name="Create account").click()

    email_input = page.locator("#email")
    await expect(page.locator("#email-error")).to_contain_text("already registered")
    await expect(page.locator("#email-error")).to_contain_text("Sign in instead")
    await expect(email_input).to_have_attribute("aria-invalid", "true")
    await expect(email_input).to_be_focused()
    await expect(email_input).to_have_value(email)
    await expect(page.locator("#password")).to_have_value("")
    await expect(page.locator("#given_name")).to_have_value("Grace")


async def test_keyboard_alone_completes_the_form(page: Page) -> None:
    email = unique_email("keys")
    await open_form(page)
    # From the top of the page: Tab until the e-mail field, never touching the mouse.
    for _ in range(6):
        await page.keyboard.press("Tab")
        if await active_id(page) == "email":
            break
    assert await active_id(page) == "email"
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    assert await active_id(page) == "password"
    await page.keyboard.type(GOOD_PASSWORD)
    await page.keyboard.press("Tab")
    assert await active_id(page) == "password-toggle"
    await page.keyboard.press("Space")
    await expect(page.locator("#password")).to_have_attribute("type", "text")
    await page.keyboard.press("Enter")
    await expect(page.locator("#password")).to_have_attribute("type", "password")
    await page.keyboard.press("Tab")
    assert await active_id(page) == "given_name"
    await page.keyboard.type("Ada")
    await page.keyboard.press("Tab")
    assert await active_id(page) == "family_name"
    await page.keyboard.type("Lovelace")
    await page.keyboard.press("Tab")
    assert await active_id(page) == "signup-submit"
    # The focused button shows a visible focus ring.
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    await page.keyboard.press("Enter")
    await expect(page.locator("#signup-success")).to_be_visible()
    assert await active_id(page) == "success-title"


async def test_double_click_sends_one_request(page: Page) -> None:
    email = unique_email("double")
    await open_form(page)
    posts = record_signup_posts(page)

    async def slow_then_continue(route: Route) -> None:
        await asyncio.sleep(0.6)
        await route.continue_()

    await page.route("**/user/signup", slow_then_continue)
    await fill_form(page, email, GOOD_PASSWORD)
    button = page.get_by_role("button", name="Create account")
    await button.dblclick()
    await expect(button).to_be_disabled()
    await page.locator("#password").press("Enter")
    await expect(page.locator("#signup-success")).to_be_visible()
    await page.wait_for_timeout(300)
    assert len(posts) == 1

    # The one account exists: signing up again with that address is refused as taken.
    again = await page.request.post(
        "/user/signup",
        data=json.dumps({"email": email, "password": GOOD_PASSWORD}),
        headers={"Content-Type": "application/json"},
    )
    assert again.status == 409


async def test_slow_server_times_out_and_the_retry_reuses_the_idempotency_key(
    page: Page,
) -> None:
    email = unique_email("slow")
    await open_form(page)
    await page.evaluate(
        "() => { document.getElementById('signup-form').dataset.timeoutMs = '800' }"
    )
    keys: list[str] = []

    async def hang(route: Route) -> None:
        keys.append(await route.request.header_value("idempotency-key") or "")
        await asyncio.sleep(2.0)
        with contextlib.suppress(Exception):  # the page has given up on it already
            await route.abort()

    await page.route("**/user/signup", hang)
    await fill_form(page, email, GOOD_PASSWORD, "Ada")
    button = page.get_by_role("button", name="Create account")
    await button.click()
    status = page.locator("#form-status")
    await expect(status).to_contain_text("taking too long", timeout=5_000)
    await expect(button).to_be_enabled()
    await expect(page.locator("#email")).to_have_value(email)
    await expect(page.locator("#password")).to_have_value(GOOD_PASSWORD)

    # The server is back: the retry of the same data carries the same Idempotency-Key.
    await page.unroute("**/user/signup")
    async with page.expect_request("**/user/signup") as sent:
        await button.click()
    retry = await sent.value
    await expect(page.locator("#signup-success")).to_be_visible()
    assert keys and keys[0]
    assert await retry.header_value("idempotency-key") == keys[0]


async def test_network_failure_shows_a_retry_message(page: Page) -> None:
    await open_form(page)
    await page.route("**/user/signup", lambda route: route.abort("connectionrefused"))
    await fill_form(page, unique_email("offline"), GOOD_PASSWORD)
    button = page.get_by_role("button", name="Create account")
    await button.click()
    await expect(page.locator("#form-status")).to_contain_text("couldn't reach the server")
    await expect(page.locator("#form-status")).to_contain_text("try again")
    await expect(button).to_be_enabled()
    await expect(page.locator("#password")).to_have_value(GOOD_PASSWORD)


@pytest.mark.parametrize(
    ("status", "title", "expected"),
    [
        (503, "Identity provider unavailable", "can't create accounts right now"),
        (429, "Too many attempts", "Too many attempts"),
    ],
)
async def test_busy_server_says_when_to_try_again(
    page: Page, status: int, title: str, expected: str
) -> None:
    async def busy(route: Route) -> None:
        await route.fulfill(
            status=status,
            headers={"Retry-After": "7", "Content-Type": "application/problem+json"},
            body=json.dumps({"type": "about:blank", "title": title, "status": status}),
        )

    await open_form(page)
    await page.route("**/user/signup", busy)
    await fill_form(page, unique_email("busy"), GOOD_PASSWORD)
    button = page.get_by_role("button", name="Create account")
    await button.click()
    status_box = page.locator("#form-status")
    await expect(status_box).to_contain_text(expected)
    await expect(status_box).to_contain_text("please try again in 7 seconds", ignore_case=True)
    await expect(button).to_be_enabled()


async def test_server_error_shows_a_retry_message(page: Page) -> None:
    await open_form(page)
    await page.route(
        "**/user/signup",
        lambda route: route.fulfill(status=500, body="Internal Server Error"),
    )
    await fill_form(page, unique_email("oops"), GOOD_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#form-status")).to_contain_text("try again")
    await expect(page.get_by_role("button", name="Create account")).to_be_enabled()


async def test_nothing_overflows_at_375_pixels(page: Page) -> None:
    async def assert_fits(state: str) -> None:
        width = await page.evaluate("() => document.scrollingElement.scrollWidth")
        assert width <= PHONE["width"], f"{state}: page is {width}px wide at 375px"

    await page.set_viewport_size(PHONE)
    await open_form(page)
    await assert_fits("empty form")
    await fill_form(page, "a-rather-long-address.for-testing@example.com", "short")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#password-error")).not_to_be_empty()
    await assert_fits("error state")
    await fill_form(page, unique_email("narrow"), GOOD_PASSWORD, "Bartholomew-Maximilian")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signup-success")).to_be_visible()
    await assert_fits("success state")


async def test_the_honeypot_is_neither_seen_nor_heard_nor_reached_nor_sent(page: Page) -> None:
    await open_form(page)
    trap = page.locator("#website")
    await expect(trap).to_be_hidden()
    await expect(trap).to_have_attribute("tabindex", "-1")
    await expect(trap).to_have_attribute("autocomplete", "off")
    # Out of the accessibility tree: a screen reader has nothing named Website to read.
    tree = await page.locator("#signup-form").aria_snapshot()
    assert "Create account" in tree and "Website" not in tree
    assert await page.get_by_role("textbox", name="Website").count() == 0
    # Tab from the submit button's side of the form: focus never lands in it.
    visited = set()
    await page.locator("#email").focus()
    for _ in range(12):
        await page.keyboard.press("Tab")
        visited.add(await active_id(page))
    assert "website" not in visited and "signup-submit" in visited
    # A person's sign-up does not send it.
    posts = record_signup_posts(page)
    await fill_form(page, unique_email("honeypot"), GOOD_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signup-success")).to_be_visible()
    assert posts and "website" not in json.loads(posts[0].post_data or "{}")
