"""The way on to sign-in: where the page sends people who have an account, and where the
success panel continues after a sign-up.

This service builds no sign-in. It links to the site's: `SIGNUP_SIGN_IN_URL` and
`SIGNUP_AFTER_SIGNUP_URL` when set; else, with Auth0 and a login application configured
(`SIGNUP_AUTH0_LOGIN_CLIENT_ID`, `SIGNUP_AUTH0_LOGIN_REDIRECT_URI`), Universal Login's
`/authorize` URL, to which the page adds the new address as `login_hint` after a
sign-up. Nothing configured: no link, and the success panel stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from signup.settings import Settings

# What Universal Login is asked for: an OpenID Connect sign-in with the profile.
LOGIN_SCOPE = "openid profile email"


def universal_login_url(settings: Settings) -> str | None:
    """`https://{domain}/authorize?…` for the site's login application, or None."""
    if settings.identity_provider != "auth0":
        return None
    domain = settings.auth0_login_domain or settings.auth0_domain
    client_id = settings.auth0_login_client_id
    redirect_uri = settings.auth0_login_redirect_uri
    if not (domain and client_id and redirect_uri):
        return None
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": LOGIN_SCOPE,
        }
    )
    return f"https://{domain}/authorize?{query}"


@dataclass(frozen=True, slots=True)
class HandOver:
    """The links of the page and of the 409 answer."""

    # "Already have an account? Sign in": the page, and `sign_in_url` in the 409 answer.
    sign_in_url: str | None
    # The success panel's "Continue" (None: no button).
    continue_url: str | None
    # The page appends `login_hint=<the new address>` to `continue_url` (Universal Login).
    continue_with_login_hint: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> HandOver:
        login = universal_login_url(settings)
        sign_in = settings.sign_in_url or login
        if settings.after_signup_url:
            return cls(sign_in, settings.after_signup_url, continue_with_login_hint=False)
        if login is not None:
            return cls(sign_in, login, continue_with_login_hint=True)
        return cls(sign_in, sign_in, continue_with_login_hint=False)
