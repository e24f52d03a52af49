"""`Auth0Standin`: the routes of the token endpoint, the Management API and the controls.

Each Management API call goes through `_management`: the rate limit first, then the
whole body is read, then the configured latency, then the token and its scope, then the
route's own answer. Every answer carries the rate-limit headers as they stood once the
call had taken its token; a 429's say that none remain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from aiohttp import web

from .answers import ApiError, json_response
from .bucket import Clock, RateLimit
from .config import StandinConfig, coerce_changes
from .faults import FaultDice
from .outside import outside_user, search
from .state import StandinState, password_digest
from .stream import EventStream
from .users import create_user


class Auth0Standin:
    """The stand-in's behaviour and state; `make_app()` gives the aiohttp application.

    `clock` and `wall_clock` drive the rate limit only (bucket.py); tokens expire by
    `time.monotonic`.
    """

    def __init__(
        self,
        config: StandinConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        **changes: Any,
    ) -> None:
        base = config or StandinConfig()
        self.config = dataclasses.replace(base, **coerce_changes(changes)) if changes else base
        self.state = StandinState()
        self.url = ""
        self._clock = clock
        self._wall_clock = wall_clock
        self._faults = FaultDice(self.config.seed)
        self._rate = self._make_rate_limit()
        self.stream = EventStream(self.config.seed)

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

    def _make_rate_limit(self) -> RateLimit:
        return RateLimit(
            self.config.rate_per_second,
            self.config.burst,
            clock=self._clock,
            wall_clock=self._wall_clock,
            reset_means=self.config.reset_means,
        )

    def configure(self, **changes: Any) -> StandinConfig:
        """Change settings at run time (faults, latency, policy, bucket, seed, …)."""
        old = self.config
        self.config = dataclasses.replace(old, **coerce_changes(changes))
        if "seed" in changes:
            self._faults.reseed(self.config.seed)
        new = self.config
        if (old.rate_per_second, old.burst, old.reset_means) != (
            new.rate_per_second,
            new.burst,
            new.reset_means,
        ):
            self._rate = self._make_rate_limit()
        return self.config

    def reset(self) -> None:
        """Forget users, tokens and counters; refill the bucket; restart the random sequence."""
        self.state = StandinState()
        self.stream.sent.clear()
        self._faults.reseed(self.config.seed)
        self._rate = self._make_rate_limit()

    def made(self, user: dict[str, Any]) -> None:
        """A user exists now: into the search index after its delay, onto the stream."""
        self.state.indexed_at[user["user_id"]] = time.monotonic() + self.config.search_index_delay
        self.stream.emit(user, self.config)

    def create_outside(
        self, kind: str, email: str, connection: str | None = None, **details: Any
    ) -> dict[str, Any]:
        """An account made without the form: `kind` "social" (a Universal Login with
        `connection`, default google-oauth2) or "dashboard" (staff, in our database
        connection). It goes onto the stream and into the search as any other."""
        chosen = connection or ("google-oauth2" if kind == "social" else self.connection)
        user = outside_user(self.state, kind=kind, email=email, connection=chosen, **details)
        self.made(user)
        return user

    def password_matches(self, user_id: str, password: str) -> bool:
        """Test-only: does this account hold `password`? (Auth0 would answer a login.)"""
        held = self.state.passwords.get(user_id)
        if held is None:
            return False
        salt, digest = held
        return secrets.compare_digest(digest, password_digest(salt, password))

    def revoke_tokens(self) -> None:
        """Every token issued so far is answered 401 from now on."""
        self.state.tokens.clear()

    # -- application -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/api/v2/users", self._create_user)
        app.router.add_get("/api/v2/users-by-email", self._users_by_email)
        app.router.add_get("/api/v2/users", self._search_users)
        app.router.add_post("/__standin/accounts", self._http_outside)
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
            return json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Unsupported grant type: {grant_type}",
                },
                403,
            )
        if form.get("client_id") != cfg.client_id or not secrets.compare_digest(
            str(form.get("client_secret", "")), cfg.client_secret
        ):
            return json_response(
                {"error": "access_denied", "error_description": "Unauthorized"}, 401
            )
        if not cfg.allow_client_credentials:
            return json_response(
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
            return json_response(
                {"error": "access_denied", "error_description": f"Service not found: {audience}"},
                403,
            )
        if not cfg.client_grant:
            return json_response(
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
        return json_response(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": cfg.token_expires_in,
                "scope": cfg.token_scope,
            }
        )

    # -- Management API ----------------------------------------------------------------

    def _limited(self, reset_in: float | None = None) -> web.Response:
        self.state.counters.rate_limited += 1
        headers = self._rate.exhausted_headers(reset_in)
        error = ApiError(429, "Global limit has been reached", "too_many_requests")
        return json_response(error.body(), 429, headers)

    def _authorize(self, request: web.Request, scope: str) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Invalid token")
        issued = self.state.tokens.get(token.strip())
        if issued is None:
            raise ApiError(401, "Invalid token")
        expiry, scopes = issued
        if time.monotonic() >= expiry:
            raise ApiError(401, "Expired token received for JSON Web Token validation")
        if scope not in scopes.split():
            raise ApiError(
                403, f"Insufficient scope, expected any of: {scope}", "insufficient_scope"
            )

    async def _management(
        self,
        request: web.Request,
        scope: str,
        handle: Callable[[web.Request, dict[str, str]], Awaitable[web.Response]],
    ) -> web.Response:
        if not self._rate.take():
            return self._limited()
        headers = self._rate.headers()
        try:
            await request.read()  # the whole request is in before any waiting
        except ConnectionError:
            raise web.HTTPBadRequest() from None  # the client went away
        if self.config.latency:
            await asyncio.sleep(self.config.latency)
        try:
            self._authorize(request, scope)
            return await handle(request, headers)
        except ApiError as exc:
            return json_response(exc.body(), exc.status, headers)

    async def _create_user(self, request: web.Request) -> web.Response:
        counters = self.state.counters
        counters.create_calls += 1
        response = await self._management(request, "create:users", self._create_answer)
        counters.create_status[response.status] += 1
        return response

    async def _create_answer(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        cfg = self.config
        fault = self._faults.roll(cfg)  # what each fault means: faults.py
        if fault is not None:
            self.state.counters.faults[fault] += 1
        if fault == "500":
            return json_response(ApiError(500, "Internal error").body(), 500, headers)
        if fault == "503":
            return json_response(ApiError(503, "Service Unavailable").body(), 503, headers)
        if fault == "429":
            return self._limited(cfg.share_429_reset_seconds)
        if fault == "slow":
            await asyncio.sleep(cfg.slow_seconds)
        user = create_user(self.state, cfg, await request.read())  # raises ApiError
        self.made(user)
        if fault == "create_then_hang":
            await asyncio.sleep(cfg.hang_seconds)
        elif fault == "create_then_500":
            return json_response(ApiError(500, "Internal error").body(), 500, headers)
        return json_response(user, 201, headers)

    async def _users_by_email(self, request: web.Request) -> web.Response:
        counters = self.state.counters
        counters.lookup_calls += 1
        response = await self._management(request, "read:users", self._lookup_answer)
        counters.lookup_status[response.status] += 1
        return response

    async def _lookup_answer(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        email = request.query.get("email")
        if not email:
            raise ApiError(
                400,
                "Query validation error: 'Missing required property: email'.",
                "invalid_query_string",
            )
        return json_response(self.state.users_by_email(email), 200, headers)

    async def _search_users(self, request: web.Request) -> web.Response:
        self.state.counters.search_calls += 1
        return await self._management(request, "read:users", self._search_answer)

    async def _search_answer(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        found = search(self.state, dict(request.query), now=time.monotonic())
        return json_response(found, 200, headers)

    # -- control -----------------------------------------------------------------------

    async def _http_outside(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            user = self.create_outside(
                str(body["kind"]),
                str(body["email"]),
                body.get("connection"),
                given_name=body.get("given_name"),
                family_name=body.get("family_name"),
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(user, 201)

    async def _http_config(self, request: web.Request) -> web.Response:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            config = self.configure(**changes)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(config.as_json())

    async def _http_state(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "users": list(self.state.users.values()),
                "counters": self.state.counters.as_json(),
                "config": self.config.as_json(),
                "url": self.url,
            }
        )

    async def _http_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response({"reset": True})

    async def _http_revoke(self, request: web.Request) -> web.Response:
        self.revoke_tokens()
        return json_response({"revoked": True})


@asynccontextmanager
async def running_standin(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 0.5,
    **config: Any,
) -> AsyncIterator[Auth0Standin]:
    """Serve a stand-in on `host:port` (0: a free port) for the block; `.url` says where.

    `config` is `Auth0Standin`'s keywords: settings of `StandinConfig`, `clock`, `wall_clock`.
    """
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
        await standin.stream.close()
        await runner.cleanup()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for 'connection refused' tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
