"""What the stand-in can be told: `StandinConfig`, checked whole each time it changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .bucket import RESET_MEANINGS, ResetMeans

PasswordPolicy = Literal["none", "low", "fair", "good", "excellent"]
PASSWORD_POLICIES: tuple[str, ...] = get_args(PasswordPolicy)

DEFAULT_DOMAIN = "standin.auth0.local"
DEFAULT_CLIENT_ID = "standin-client"
DEFAULT_CLIENT_SECRET = "standin-secret"  # noqa: S105 - a well-known test value
DEFAULT_CONNECTION = "Username-Password-Authentication"

# The fault shares, in the order a roll of the dice walks them (faults.py).
FAULT_SHARES = (
    "share_500",
    "share_503",
    "share_429",
    "share_slow",
    "share_create_then_hang",
    "share_create_then_500",
)


@dataclass(frozen=True)
class StandinConfig:
    """Everything the stand-in can be told; change it with `Auth0Standin.configure`."""

    domain: str = DEFAULT_DOMAIN
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    connections: tuple[str, ...] = (DEFAULT_CONNECTION,)
    # Token endpoint.
    token_expires_in: int = 86400
    token_scope: str = "create:users read:users"  # noqa: S105
    client_grant: bool = True  # False: 403 "Client is not authorized to access …"
    allow_client_credentials: bool = True  # False: 403 unauthorized_client
    token_latency: float = 0.0
    # Management API.
    latency: float = 0.0
    password_policy: PasswordPolicy = "low"  # noqa: S105
    password_dictionary: frozenset[str] = frozenset()
    password_no_personal_info: bool = False
    password_history: frozenset[str] = frozenset()  # answered as "used before"
    rate_per_second: float | None = None  # None: no bucket (very large limit)
    burst: int = 10
    # What x-ratelimit-reset names: when the bucket is full again, or the next token.
    reset_means: ResetMeans = "full-bucket"
    # Fault injection on create calls (shares 0..1, together at most 1).
    share_500: float = 0.0
    share_503: float = 0.0
    share_429: float = 0.0
    share_429_reset_seconds: float = 1.0
    share_slow: float = 0.0  # wait slow_seconds, then carry out the call
    slow_seconds: float = 1.0
    share_create_then_hang: float = 0.0  # create, then answer only after hang_seconds
    hang_seconds: float = 5.0
    share_create_then_500: float = 0.0  # create, then answer 500
    seed: int = 0
    # User search: a new user is found only this long after it was made.
    search_index_delay: float = 0.0
    # The event stream (stream.py): where `user.created` goes (None: no stream), with
    # which bearer token; the share of events sent twice, the most a delivery is held
    # back (so they arrive out of order), and the first retry's delay (then doubling).
    stream_url: str | None = None
    stream_token: str | None = None
    stream_share_duplicate: float = 0.0
    stream_max_delay: float = 0.0
    stream_retry_seconds: float = 0.05

    def __post_init__(self) -> None:
        if self.password_policy not in PASSWORD_POLICIES:
            raise ValueError(f"password_policy must be one of {', '.join(PASSWORD_POLICIES)}")
        shares = [getattr(self, name) for name in FAULT_SHARES]
        if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError("fault shares must each be within 0..1 and add up to at most 1")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive (or None for no limit)")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        if self.reset_means not in RESET_MEANINGS:
            raise ValueError(f"reset_means must be one of {', '.join(RESET_MEANINGS)}")

    @property
    def audience(self) -> str:
        return f"https://{self.domain}/api/v2/"

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["connections"] = list(self.connections)
        data["password_dictionary"] = sorted(self.password_dictionary)
        data["password_history"] = sorted(self.password_history)
        return data


def coerce_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Changes as JSON or a CLI gives them, in the types `StandinConfig` holds.

    Unknown names are refused here, all of them in one message, so that a typo in a
    `POST /__standin/config` or a test's keyword says which names were not known.
    """
    names = {f.name for f in dataclasses.fields(StandinConfig)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"unknown stand-in settings: {', '.join(sorted(unknown))}")
    out = dict(changes)
    if "password_dictionary" in out:
        out["password_dictionary"] = frozenset(str(w).lower() for w in out["password_dictionary"])
    if "password_history" in out:
        out["password_history"] = frozenset(str(w) for w in out["password_history"])
    if "connections" in out:
        value = out["connections"]
        out["connections"] = (value,) if isinstance(value, str) else tuple(value)
    return out
