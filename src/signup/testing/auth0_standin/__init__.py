"""A local Auth0 stand-in: the token endpoint and the two Management API calls we use.

It answers as docs/auth0.md documents (bodies, status codes, error shape, rate-limit
headers), keeps its state in memory, and can inject faults: 500/503/429 answers, slow
answers, and answers lost after the user was created.

In tests::

    async with running_standin(latency=0.0, password_policy="fair") as standin:
        provider = Auth0IdentityProvider(
            domain=standin.domain, base_url=standin.url,
            client_id=standin.client_id, client_secret=SecretStr(standin.client_secret),
        )
        ...
        standin.configure(share_500=0.5)
        assert standin.state.counters.create_calls == 1

From a shell (foreground; prints its URL)::

    python -m signup.testing.auth0_standin --port 9000 --latency 0.05

Control over HTTP: `POST /__standin/config` (JSON of config fields), `GET
/__standin/state` (users, counters, config), `POST /__standin/reset` (forget users,
tokens and counters; the configuration stays), `POST /__standin/revoke-tokens`.

The modules: `config` (what it can be told), `app` (`Auth0Standin`, its routes,
`running_standin`), `users` (the create call's checks and the user it makes), `policy`
(the tenant's password policy), `bucket` (the rate limit and its headers; its clocks can
be injected), `faults` (which fault a create call gets), `state`, `answers` (Auth0's
error shape), `cli` (the process).
"""

from .app import Auth0Standin, free_port, running_standin
from .bucket import UNLIMITED, Clock, RateLimit, TokenBucket
from .cli import main
from .config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_CONNECTION,
    DEFAULT_DOMAIN,
    PASSWORD_POLICIES,
    PasswordPolicy,
    StandinConfig,
)
from .policy import password_meets_policy
from .state import Counters, StandinState

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_CONNECTION",
    "DEFAULT_DOMAIN",
    "PASSWORD_POLICIES",
    "UNLIMITED",
    "Auth0Standin",
    "Clock",
    "Counters",
    "PasswordPolicy",
    "RateLimit",
    "StandinConfig",
    "StandinState",
    "TokenBucket",
    "free_port",
    "main",
    "password_meets_policy",
    "running_standin",
]
