"""Auth0 as the identity provider, through the Management API (see docs/auth0.md).

- `provider`: what each answer means for a sign-up (`Auth0IdentityProvider`, the port);
- `accounts`: Auth0's user objects read into `CreatedAccount`;
- `token`: the client-credentials token, cached, one refresh at a time;
- `gate`: pacing to the tenant's rate limit from the `x-ratelimit-*` headers;
- `transport`: one aiohttp session, telling "never sent" from "answer lost"
  (docs/decisions/0011-aiohttp-for-auth0.md);
- `clock`: the clocks the token cache and the gate read, injectable for tests.
"""

from signup.adapters.auth0.accounts import INTENT_KEY
from signup.adapters.auth0.clock import Clock, LoopClock
from signup.adapters.auth0.gate import RateGate
from signup.adapters.auth0.provider import DEFAULT_CONNECTION, Auth0IdentityProvider

__all__ = [
    "DEFAULT_CONNECTION",
    "INTENT_KEY",
    "Auth0IdentityProvider",
    "Clock",
    "LoopClock",
    "RateGate",
]
