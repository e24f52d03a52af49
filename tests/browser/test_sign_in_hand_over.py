"""The way on to sign-in in a real browser: the link, the continue button with the new
address as `login_hint`, and the 409's sign-in link (Auth0 mode; the sign-up answers are
the server's own shapes, fulfilled by the test so no Auth0 is needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Route, expect

from .conftest import Server, start_server
from .helpers import DESKTOP, fill_form, open_form

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

CALLBACK = "https://nc.example/callback"


@pytest.fixture(scope="module")
def auth0_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "SIGNUP_IDENTITY_PROVIDER": "auth0",
        "SIGNUP_AUTH0_DOMAIN": "nakedcoders.eu.auth0.com",
        "SIGNUP_AUTH0_CLIENT_ID": "m2m",
        "SIGNUP_AUTH0_CLIENT_SECRET": "not-used-here",
        "SIGNUP_AUTH0_BASE_URL": "http://127.0.0.1:9",  # never called: answers are fulfilled
        "SIGNUP_AUTH0_LOGIN_CLIENT_ID": "site-app",
        "SIGNUP_AUTH0_LOGIN_REDIRECT_URI": CALLBACK,
    }
    with start_server(tmp_path_factory.mktemp("signup-auth0"), env) as srv:
        yield srv


def _answer(status: int, body: dict[str, object]):  # type: ignore[no-untyped-def]
    async def fulfil(route: Route) -> None:
        media = "application/json" if status < 400 else "application/problem+json"
        await route.fulfill(status=status, content_type=media, body=json.dumps(body))

    return fulfil


async def test_success_continues_to_universal_login_with_the_address(
    browser: Browser, auth0_server: Server
) -> None:
    context = await browser.new_context(viewport=DESKTOP, base_url=auth0_server.base_url)
    page = await context.new_page()
    try:
        await open_form(page)
        sign_in = page.locator("#sign-in-link")
        await expect(sign_in).to_have_text("Sign in")
        href = await sign_in.get_attribute("href") or ""
        assert href.startswith("https://nakedcoders.eu.auth0.com/authorize?")
        assert "login_hint" not in href

        await page.route(
            "**/user/signup", _answer(201, {"user_id": "auth0|1", "email": "ada+x@example.com"})
        )
        await fill_form(page, "Ada+X@Example.com", "correct horse battery staple")
        await page.click("#signup-submit")
        onward = page.locator("#success-continue")
        await expect(onward).to_be_visible()
        url = urlsplit(await onward.get_attribute("href") or "")
        assert (url.netloc, url.path) == ("nakedcoders.eu.auth0.com", "/authorize")
        query = parse_qs(url.query)
        assert query["login_hint"] == ["ada+x@example.com"]
        assert query["client_id"] == ["site-app"] and query["redirect_uri"] == [CALLBACK]
        assert query["response_type"] == ["code"]
    finally:
        await context.close()


async def test_already_registered_offers_the_sign_in_link(
    browser: Browser, auth0_server: Server
) -> None:
    context = await browser.new_context(viewport=DESKTOP, base_url=auth0_server.base_url)
    page = await context.new_page()
    try:
        await open_form(page)
        problem = {
            "type": "urn:signup:problem:email-already-registered",
            "title": "E-mail already registered",
            "status": 409,
            "detail": "An account with this e-mail address already exists.",
            "errors": [{"field": "email", "message": "x", "code": "email.registered"}],
            "sign_in_url": "https://nc.example/login",
        }
        await page.route("**/user/signup", _answer(409, problem))
        await fill_form(page, "ada@example.com", "correct horse battery staple")
        await page.click("#signup-submit")
        link = page.locator("#form-status #status-sign-in")
        await expect(link).to_have_attribute("href", "https://nc.example/login")
        await expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")

        # A link that is not http(s) or a path of the site is not followed.
        await page.unroute("**/user/signup")
        await page.route(
            "**/user/signup", _answer(409, {**problem, "sign_in_url": "javascript:alert(1)"})
        )
        await page.fill("#password", "correct horse battery staple")
        await page.click("#signup-submit")
        await expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#status-sign-in")).to_have_count(0)
    finally:
        await context.close()
