"""The way on to sign-in: the links the page and the 409 answer carry, from the settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from signup.entrypoints.web.hand_over import HandOver, universal_login_url
from signup.entrypoints.web.page import render_page
from signup.settings import Settings

AUTH0: dict[str, Any] = {
    "identity_provider": "auth0",
    "auth0_domain": "nakedcoders.eu.auth0.com",
    "auth0_client_id": "m2m",
    "auth0_client_secret": "secret",
}
LOGIN = {
    "auth0_login_client_id": "site-app",
    "auth0_login_redirect_uri": "https://nakedcoders.example/callback?x=1",
}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_universal_login_is_built_from_the_login_application() -> None:
    url = universal_login_url(settings(**AUTH0, **LOGIN))
    assert url is not None
    split = urlsplit(url)
    assert (split.scheme, split.netloc, split.path) == (
        "https",
        "nakedcoders.eu.auth0.com",
        "/authorize",
    )
    assert parse_qs(split.query) == {
        "client_id": ["site-app"],
        "response_type": ["code"],
        "redirect_uri": ["https://nakedcoders.example/callback?x=1"],
        "scope": ["openid profile email"],
    }
    custom = universal_login_url(settings(**AUTH0, **LOGIN, auth0_login_domain="login.nc.example"))
    assert custom is not None and custom.startswith("https://login.nc.example/authorize?")


def test_auth0_defaults_sign_in_and_continue_with_the_login_hint() -> None:
    hand_over = HandOver.from_settings(settings(**AUTH0, **LOGIN))
    assert hand_over.sign_in_url == universal_login_url(settings(**AUTH0, **LOGIN))
    assert hand_over.continue_url == hand_over.sign_in_url
    assert hand_over.continue_with_login_hint


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, HandOver(None, None, False)),  # local, nothing configured: no links
        (AUTH0, HandOver(None, None, False)),  # Auth0 without a login application
        ({"sign_in_url": "/login"}, HandOver("/login", "/login", False)),
        (
            {"sign_in_url": "https://nc.example/login", "after_signup_url": "/welcome"},
            HandOver("https://nc.example/login", "/welcome", False),
        ),
        (
            {**AUTH0, **LOGIN, "after_signup_url": "https://nc.example/start"},
            HandOver(
                universal_login_url(settings(**AUTH0, **LOGIN)),
                "https://nc.example/start",
                False,
            ),
        ),
        (  # the site's own sign-in page wins; continuing still goes by Universal Login
            {**AUTH0, **LOGIN, "sign_in_url": "/login"},
            HandOver("/login", universal_login_url(settings(**AUTH0, **LOGIN)), True),
        ),
        ({**LOGIN}, HandOver(None, None, False)),  # local: the login application is Auth0's
    ],
)
def test_what_the_settings_give(values: dict[str, Any], expected: HandOver) -> None:
    assert HandOver.from_settings(settings(**values)) == expected


@pytest.mark.parametrize(
    "values",
    [
        {"sign_in_url": "javascript:alert(1)"},
        {"sign_in_url": "//evil.example/login"},
        {"after_signup_url": "ftp://nc.example/"},
        {"after_signup_url": 'https://nc.example/"><script>'},
        {"auth0_login_client_id": "site-app"},  # without its callback
        {"auth0_login_redirect_uri": "https://nc.example/cb"},  # without its application
        {**LOGIN, "auth0_login_redirect_uri": "/callback"},  # not absolute
        {"auth0_login_domain": "https://login.example.com/"},
    ],
)
def test_unusable_links_stop_the_start(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


def test_the_page_links_to_sign_in_and_continues_with_the_hint() -> None:
    html = render_page(settings(**AUTH0, **LOGIN))
    login = universal_login_url(settings(**AUTH0, **LOGIN))
    assert login is not None
    escaped = login.replace("&", "&amp;")
    assert f'<a id="sign-in-link" href="{escaped}">Sign in</a>' in html
    assert f'id="success-continue" class="button" href="{escaped}" data-login-hint="true"' in html

    plain = render_page(settings())
    assert "sign-in-link" not in plain and "success-continue" not in plain

    own = render_page(settings(sign_in_url="/login", after_signup_url="/welcome"))
    assert 'href="/login">Sign in</a>' in own
    assert 'id="success-continue" class="button" href="/welcome">' in own
