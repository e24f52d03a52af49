"""A local Auth0 stand-in: the token endpoint and the two Management API calls we use.

It answers as /work/shared/auth0.md documents (bodies, status codes, error shape,
rate-limit headers), keeps its state in memory, and can inject faults: 500/503/429
answers, slow answers, and answers lost after the user was created.

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
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import hashlib
import math
import random
import re
import secrets
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import orjson
from aiohttp import web

PasswordPolicy = Literal["none", "low", "fair", "good", "excellent"]
PASSWORD_POLICIES: tuple[str, ...] = get_args(PasswordPolicy)

DEFAULT_DOMAIN = "standin.auth0.local"
DEFAULT_CLIENT_ID = "standin-client"
DEFAULT_CLIENT_SECRET = "standin-secret"  # noqa: S105 - a well-known test value
DEFAULT_CONNECTION = "Username-Password-Authentication"
# Rate-limit headers when the bucket is off.
UNLIMITED = 1_000_000

_STRING_PROPS = frozenset(
    {
        "connection",
        "email",
        "password",
        "given_name",
        "family_name",
        "name",
        "nickname",
        "picture",
        "user_id",
        "username",
        "phone_number",
    }
)
_BOOL_PROPS = frozenset({"email_verified", "verify_email", "blocked"})
_OBJECT_PROPS = frozenset({"user_metadata", "app_metadata"})
_ALLOWED_PROPS = _STRING_PROPS | _BOOL_PROPS | _OBJECT_PROPS
_MAX_LENGTH = {"given_name": 150, "family_name": 150, "name": 300, "nickname": 300}
_DESCRIPTIONS = {
    "connection": "Name of the connection this user should be created in.",
    "email": "The user's email.",
    "password": "Initial password for this user.",
    "given_name": "The user's given name(s).",
    "family_name": "The user's family name(s).",
    "name": "The user's full name.",
    "nickname": "The user's nickname.",
    "picture": "A URI pointing to the user's picture.",
    "username": "The user's username.",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REPEATS = re.compile(r"(.)\1\1")

_SHARES = (
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

    def __post_init__(self) -> None:
        if self.password_policy not in PASSWORD_POLICIES:
            raise ValueError(f"password_policy must be one of {', '.join(PASSWORD_POLICIES)}")
        shares = [getattr(self, name) for name in _SHARES]
        if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError("fault shares must each be within 0..1 and add up to at most 1")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive (or None for no limit)")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def audience(self) -> str:
        return f"https://{self.domain}/api/v2/"

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["connections"] = list(self.connections)
        data["password_dictionary"] = sorted(self.password_dictionary)
        data["password_history"] = sorted(self.password_history)
        return data


def _coerce(changes: Mapping[str, Any]) -> dict[str, Any]:
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


@dataclass
class Counters:
    token_requests: int = 0
    create_calls: int = 0
    lookup_calls: int = 0
    rate_limited: int = 0  # 429 answers, from the bucket or injected
    token_status: Counter[int] = field(default_factory=Counter)
    create_status: Counter[int] = field(default_factory=Counter)
    lookup_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "create_calls": self.create_calls,
            "lookup_calls": self.lookup_calls,
            "rate_limited": self.rate_limited,
            "token_status": {str(k): v for k, v in self.token_status.items()},
            "create_status": {str(k): v for k, v in self.create_status.items()},
            "lookup_status": {str(k): v for k, v in self.lookup_status.items()},
            "faults": dict(self.faults),
        }


@dataclass
class StandinState:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # by user_id
    counters: Counters = field(default_factory=Counters)
    # (connection, lower-cased e-mail) → user_id, and (connection, username) → user_id
    by_email: dict[tuple[str, str], str] = field(default_factory=dict)
    by_username: dict[tuple[str, str], str] = field(default_factory=dict)
    tokens: dict[str, tuple[float, str]] = field(default_factory=dict)  # → (expiry, scope)
    # user_id → (salt, salted SHA-256 of the password): kept apart from the user objects,
    # which never show it, as Auth0's never do; only `password_matches` reads it.
    passwords: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)

    def users_by_email(self, email: str) -> list[dict[str, Any]]:
        wanted = email.lower()
        return [u for u in self.users.values() if u.get("email") == wanted]


class _Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def headers(self) -> dict[str, str]:
        reset = math.ceil(time.time() + (self.burst - self.tokens) / self.rate)
        return {
            "x-ratelimit-limit": str(self.burst),
            "x-ratelimit-remaining": str(int(self.tokens)),
            "x-ratelimit-reset": str(reset),
        }


def _password_digest(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode()).digest()


def _iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _ApiError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "statusCode": self.status,
            "error": _REASONS.get(self.status, "Error"),
            "message": self.message,
        }
        if self.error_code:
            data["errorCode"] = self.error_code
        return data


def _payload_error(detail: str, prop: str | None = None) -> _ApiError:
    where = f" on property {prop} ({_DESCRIPTIONS.get(prop, prop)})" if prop else ""
    return _ApiError(400, f"Payload validation error: '{detail}'{where}.", "invalid_body")


def _classes(password: str) -> int:
    return sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )


def password_meets_policy(password: str, policy: str) -> bool:
    """The tenant's password policy levels, as auth0.md lists them."""
    n = len(password)
    if policy == "none":
        return n >= 1
    if policy == "low":
        return n >= 6
    if policy == "fair":
        return (
            n >= 8
            and any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
        )
    if policy == "good":
        return n >= 8 and _classes(password) >= 3
    if policy == "excellent":
        return n >= 10 and _classes(password) >= 3 and not _REPEATS.search(password)
    raise ValueError(f"unknown password policy {policy!r}")


class Auth0Standin:
    """The stand-in's behaviour and state; `make_app()` gives the aiohttp application."""

    def __init__(self, config: StandinConfig | None = None, **changes: Any) -> None:
        base = config or StandinConfig()
        self.config = dataclasses.replace(base, **_coerce(changes)) if changes else base
        self.state = StandinState()
        self.url = ""
        self._rng = random.Random(self.config.seed)
        self._bucket = self._make_bucket()

    # -- knobs -------------------------------------------------------------------------

    @property
    def domain(self) -> str:
        return self.config.domain

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    @property
    def audience(self) -> str:
        return self.config.audience

    @property
    def connection(self) -> str:
        return self.config.connections[0]

    def _make_bucket(self) -> _Bucket | None:
        rate = self.config.rate_per_second
        return _Bucket(rate, self.config.burst) if rate is not None else None

    def configure(self, **changes: Any) -> StandinConfig:
        """Change settings at run time (faults, latency, policy, bucket, seed, …)."""
        old = self.config
        self.config = dataclasses.replace(old, **_coerce(changes))
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        if old.rate_per_second != self.config.rate_per_second or old.burst != self.config.burst:
            self._bucket = self._make_bucket()
        return self.config

    def reset(self) -> None:
        """Forget users, tokens and counters; refill the bucket; restart the random sequence."""
        self.state = StandinState()
        self._rng = random.Random(self.config.seed)
        self._bucket = self._make_bucket()

    def password_matches(self, user_id: str, password: str) -> bool:
        """Test-only: does this account hold `password`? (Auth0 would answer a login.)"""
        held = self.state.passwords.get(user_id)
        if held is None:
            return False
        salt, digest = held
        return secrets.compare_digest(digest, _password_digest(salt, password))

    def revoke_tokens(self) -> None:
        """Every token issued so far is answered 401 from now on."""
        self.state.tokens.clear()

    # -- application -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/api/v2/users", self._create_user)
        app.router.add_get("/api/v2/users-by-email", self._users_by_email)
        app.router.add_post("/__standin/config", self._http_config)
        app.router.add_get("/__standin/state", self._http_state)
        app.router.add_post("/__standin/reset", self._http_reset)
        app.router.add_post("/__standin/revoke-tokens", self._http_revoke)
        return app

    # -- token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        counters = self.state.counters
        counters.token_requests += 1
        response = await self._token_answer(request)
        counters.token_status[response.status] += 1
        return response

    async def _token_answer(self, request: web.Request) -> web.Response:
        cfg = self.config
        if cfg.token_latency:
            await asyncio.sleep(cfg.token_latency)
        form: dict[str, str] = {}
        items: Iterable[tuple[str, object]]
        try:
            if request.content_type == "application/json":
                data = orjson.loads(await request.read())
                items = data.items() if isinstance(data, dict) else ()
            else:
                items = (await request.post()).items()
        except (orjson.JSONDecodeError, ValueError):
            items = ()
        for key, value in items:
            if isinstance(value, str):
                form[key] = value
        grant_type = form.get("grant_type")
        if grant_type != "client_credentials":
            return _json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Unsupported grant type: {grant_type}",
                },
                403,
            )
        if form.get("client_id") != cfg.client_id or not secrets.compare_digest(
            str(form.get("client_secret", "")), cfg.client_secret
        ):
            return _json({"error": "access_denied", "error_description": "Unauthorized"}, 401)
        if not cfg.allow_client_credentials:
            return _json(
                {
                    "error": "unauthorized_client",
                    "error_description": (
                        "Grant type 'client_credentials' not allowed for the client."
                    ),
                    "error_uri": "https://auth0.com/docs/clients/client-grant-types",
                },
                403,
            )
        audience = form.get("audience")
        if audience != cfg.audience:
            return _json(
                {"error": "access_denied", "error_description": f"Service not found: {audience}"},
                403,
            )
        if not cfg.client_grant:
            return _json(
                {
                    "error": "access_denied",
                    "error_description": (
                        f'Client is not authorized to access "{audience}". You need to create '
                        'a "client-grant" associated to this API. See: '
                        "https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"
                    ),
                },
                403,
            )
        token = "eyJ" + secrets.token_urlsafe(32)
        self.state.tokens[token] = (time.monotonic() + cfg.token_expires_in, cfg.token_scope)
        return _json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": cfg.token_expires_in,
                "scope": cfg.token_scope,
            }
        )

    # -- Management API ----------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        if self._bucket is not None:
            return self._bucket.headers()
        return {
            "x-ratelimit-limit": str(UNLIMITED),
            "x-ratelimit-remaining": str(UNLIMITED),
            "x-ratelimit-reset": str(math.ceil(time.time())),
        }

    def _limited(self, reset_in: float | None = None) -> web.Response:
        self.state.counters.rate_limited += 1
        headers = self._rate_headers()
        headers["x-ratelimit-remaining"] = "0"
        if reset_in is not None:
            headers["x-ratelimit-reset"] = str(math.ceil(time.time() + reset_in))
        error = _ApiError(429, "Global limit has been reached", "too_many_requests")
        return _json(error.body(), 429, headers)

    def _authorize(self, request: web.Request, scope: str) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(401, "Invalid token")
        issued = self.state.tokens.get(token.strip())
        if issued is None:
            raise _ApiError(401, "Invalid token")
        expiry, scopes = issued
        if time.monotonic() >= expiry:
            raise _ApiError(401, "Expired token received for JSON Web Token validation")
        if scope not in scopes.split():
            raise _ApiError(
                403, f"Insufficient scope, expected any of: {scope}", "insufficient_scope"
            )

    async def _management(
        self,
        request: web.Request,
        scope: str,
        handle: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]],
    ) -> web.Response:
        if self._bucket is not None and not self._bucket.take():
            return self._limited()
        headers = self._rate_headers()
        try:
            await request.read()  # the whole request is in before any waiting
        except ConnectionError:
            raise web.HTTPBadRequest() from None  # the client went away
        if self.config.latency:
            await asyncio.sleep(self.config.latency)
        try:
            self._authorize(request, scope)
            return await handle(request, headers)
        except _ApiError as exc:
            return _json(exc.body(), exc.status, headers)

    async def _create_user(self, request: web.Request) -> web.Response:
        counters = self.state.counters
        counters.create_calls += 1
        response = await self._management(request, "create:users", self._create_answer)
        counters.create_status[response.status] += 1
        return response

    def _roll(self) -> str | None:
        cfg = self.config
        roll = self._rng.random()
        edge = 0.0
        for name in _SHARES:
            edge += getattr(cfg, name)
            if roll < edge:
                return name.removeprefix("share_")
        return None

    async def _create_answer(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        cfg = self.config
        fault = self._roll()
        if fault is not None:
            self.state.counters.faults[fault] += 1
        if fault == "500":
            return _json(_ApiError(500, "Internal error").body(), 500, headers)
        if fault == "503":
            return _json(_ApiError(503, "Service Unavailable").body(), 503, headers)
        if fault == "429":
            return self._limited(cfg.share_429_reset_seconds)
        if fault == "slow":
            await asyncio.sleep(cfg.slow_seconds)
        raw = await request.read()
        user = self._create(raw)  # raises _ApiError
        if fault == "create_then_hang":
            await asyncio.sleep(cfg.hang_seconds)
        elif fault == "create_then_500":
            return _json(_ApiError(500, "Internal error").body(), 500, headers)
        return _json(user, 201, headers)

    def _create(self, raw: bytes) -> dict[str, Any]:
        cfg = self.config
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _payload_error("Invalid JSON") from None
        if not isinstance(body, dict):
            raise _payload_error(f"Expected type object but found type {type(body).__name__}")
        extra = [key for key in body if key not in _ALLOWED_PROPS]
        if extra:
            raise _payload_error(f"Additional properties not allowed: {','.join(extra)}")
        for key, value in body.items():
            expected, ok = (
                ("string", isinstance(value, str))
                if key in _STRING_PROPS
                else ("boolean", isinstance(value, bool))
                if key in _BOOL_PROPS
                else ("object", isinstance(value, dict))
            )
            if not ok:
                found = "null" if value is None else type(value).__name__
                raise _payload_error(f"Expected type {expected} but found type {found}", key)
            limit = _MAX_LENGTH.get(key)
            if limit is not None and len(value) > limit:
                raise _payload_error(
                    f"String is too long ({len(value)} chars), maximum {limit}", key
                )
        connection = body.get("connection")
        if connection is None:
            raise _payload_error("Missing required property: connection")
        if connection not in cfg.connections:
            raise _ApiError(400, "The connection does not exist.", "inexistent_connection")
        for required in ("email", "password"):
            if required not in body:
                raise _payload_error(f"Missing required property: {required}")
        email: str = body["email"]
        password: str = body["password"]
        if not _EMAIL.match(email):
            raise _payload_error(
                f"Object didn't pass validation for format email: {email}", "email"
            )
        email = email.lower()
        state = self.state
        if (connection, email) in state.by_email:
            raise _ApiError(409, "The user already exists.", "auth0_idp_error")
        username = body.get("username")
        if username is not None and (connection, username.lower()) in state.by_username:
            raise _ApiError(400, "The username provided is in use already.", "auth0_idp_error")
        self._check_password(password, email, body)

        now = _iso_now()
        hex_id = secrets.token_hex(12)
        local = email.split("@", 1)[0]
        digest = hashlib.sha256(email.encode()).hexdigest()
        user: dict[str, Any] = {
            "user_id": f"auth0|{hex_id}",
            "email": email,
            "email_verified": body.get("email_verified", False),
        }
        for key in ("given_name", "family_name", "username", "phone_number", "blocked"):
            if key in body:
                user[key] = body[key]
        user.update(
            {
                "name": body.get("name", email),
                "nickname": body.get("nickname", local),
                "picture": body.get(
                    "picture",
                    f"https://s.gravatar.com/avatar/{digest}?s=480&r=pg&d=identicon",
                ),
                "created_at": now,
                "updated_at": now,
                "identities": [
                    {
                        "connection": connection,
                        "user_id": hex_id,
                        "provider": "auth0",
                        "isSocial": False,
                    }
                ],
                "user_metadata": body.get("user_metadata", {}),
                "app_metadata": body.get("app_metadata", {}),
            }
        )
        state.users[user["user_id"]] = user
        state.by_email[(connection, email)] = user["user_id"]
        salt = secrets.token_bytes(16)
        state.passwords[user["user_id"]] = (salt, _password_digest(salt, password))
        if username is not None:
            state.by_username[(connection, username.lower())] = user["user_id"]
        return user

    def _check_password(self, password: str, email: str, body: Mapping[str, Any]) -> None:
        cfg = self.config
        if not password_meets_policy(password, cfg.password_policy):
            raise _ApiError(400, "PasswordStrengthError: Password is too weak")
        lowered = password.lower()
        if lowered in cfg.password_dictionary:
            raise _ApiError(400, "PasswordDictionaryError: Password is too common")
        if cfg.password_no_personal_info:
            infos = {email, email.split("@", 1)[0]}
            for key in ("given_name", "family_name", "name", "nickname", "username"):
                value = body.get(key)
                if isinstance(value, str):
                    infos.update(part for part in re.split(r"[\s@.]+", value.lower()) if part)
            if any(len(info) >= 3 and info in lowered for info in infos):
                raise _ApiError(400, "PasswordNoUserInfoError: Password contains user information")
        if password in cfg.password_history:
            raise _ApiError(400, "PasswordHistoryError: Password has previously been used")

    async def _users_by_email(self, request: web.Request) -> web.Response:
        counters = self.state.counters
        counters.lookup_calls += 1
        response = await self._management(request, "read:users", self._lookup_answer)
        counters.lookup_status[response.status] += 1
        return response

    async def _lookup_answer(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        email = request.query.get("email")
        if not email:
            raise _ApiError(
                400,
                "Query validation error: 'Missing required property: email'.",
                "invalid_query_string",
            )
        return _json(self.state.users_by_email(email), 200, headers)

    # -- control -----------------------------------------------------------------------

    async def _http_config(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            config = self.configure(**changes)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(config.as_json())

    async def _http_state(self, request: web.Request) -> web.Response:
        return _json(
            {
                "users": list(self.state.users.values()),
                "counters": self.state.counters.as_json(),
                "config": self.config.as_json(),
                "url": self.url,
            }
        )

    async def _http_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"reset": True})

    async def _http_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return _json({"revoked": True})


@asynccontextmanager
async def running_standin(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 0.5,
    **config: Any,
) -> AsyncIterator[Auth0Standin]:
    """Serve a stand-in on `host:port` (0: a free port) for the block; `.url` says where."""
    standin = Auth0Standin(**config)
    runner = web.AppRunner(standin.make_app(), access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]
        bound_host, bound_port = cast("tuple[str, int]", tuple(bound[:2]))
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        standin.url = f"http://{shown}:{bound_port}"
        yield standin
    finally:
        await runner.cleanup()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for 'connection refused' tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m signup.testing.auth0_standin",
        description="Run a local Auth0 stand-in (token + Management API users) in the foreground.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--latency", type=float, default=0.0, help="seconds per Management API call")
    p.add_argument("--token-latency", type=float, default=0.0)
    p.add_argument("--domain", default=DEFAULT_DOMAIN)
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    p.add_argument(
        "--connection",
        action="append",
        help=f"database connection name (repeatable; default {DEFAULT_CONNECTION})",
    )
    p.add_argument("--password-policy", choices=PASSWORD_POLICIES, default="low")
    p.add_argument("--dictionary", default="", help="comma-separated words refused as too common")
    p.add_argument("--no-personal-info", action="store_true")
    p.add_argument("--token-expires-in", type=int, default=86400)
    p.add_argument("--rate", type=float, default=None, help="bucket refill per second (off)")
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    for share in _SHARES:
        p.add_argument("--" + share.replace("_", "-"), type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=1.0)
    p.add_argument("--hang-seconds", type=float, default=5.0)
    return p


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {
        "latency": args.latency,
        "token_latency": args.token_latency,
        "domain": args.domain,
        "client_id": args.client_id,
        "client_secret": args.client_secret,
        "connections": tuple(args.connection or [DEFAULT_CONNECTION]),
        "password_policy": args.password_policy,
        "password_dictionary": [w.strip() for w in args.dictionary.split(",") if w.strip()],
        "password_no_personal_info": args.no_personal_info,
        "token_expires_in": args.token_expires_in,
        "rate_per_second": args.rate,
        "burst": args.burst,
        "seed": args.seed,
        "slow_seconds": args.slow_seconds,
        "hang_seconds": args.hang_seconds,
    }
    for share in _SHARES:
        config[share] = getattr(args, share)
    return config


async def _serve(host: str, port: int, config: dict[str, Any]) -> None:
    async with running_standin(host=host, port=port, **config) as standin:
        print(
            f"Auth0 stand-in on {standin.url} (domain {standin.domain}, "
            f"client id {standin.client_id}, audience {standin.audience})",
            flush=True,
        )
        await _keep_out_of_the_collector()


async def _keep_out_of_the_collector(every: float = 1.0) -> None:
    """As a process of its own, answer on time however many users it holds.

    The users it keeps (tens of thousands in a benchmark) are what a full collection
    walks: 83-108 ms stops of every call in flight, measured, which Auth0 does not make
    and which counted as the service's own latency. Every second the young objects are
    collected and what survives is frozen out of the collector's sight (a few cycles
    that die later stay, which a stand-in can afford).
    """
    while True:
        await asyncio.sleep(every)
        gc.collect(1)
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config_from_args(args)
        StandinConfig(**_coerce(config))  # validate before binding
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coro = _serve(args.host, args.port, config)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            asyncio.run(coro)
        else:
            uvloop.run(coro)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
