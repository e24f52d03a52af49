"""Auth0 as the identity provider: the Management API over one long-lived aiohttp session.

Two endpoints are used (see /work/shared/auth0.md): `POST /oauth/token` (client
credentials, cached until shortly before expiry, one refresh at a time) and the
Management API (`POST /api/v2/users`, `GET /api/v2/users-by-email`), paced to the
tenant's rate limit by a `RateGate` that reads the `x-ratelimit-*` headers.

What an answer means for the caller:

- nothing was sent (refused connection, DNS, connect timeout), a 4xx that is our own
  misconfiguration, a 429 whose reset lies past the queue deadline → `ProviderUnavailable`;
- the request went out but its answer was lost (read timeout, disconnect, 5xx) →
  `OutcomeUnknown`: the account may exist and the caller reconciles later.

The password only ever lives in the request body; no exception text, log line or repr
carries it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import orjson
import structlog
from pydantic import SecretStr

from signup import metrics
from signup.domain.errors import (
    EmailAlreadyRegistered,
    FieldRejected,
    OutcomeUnknown,
    ProviderUnavailable,
)
from signup.domain.model import Applicant, CreatedAccount

if TYPE_CHECKING:
    from signup.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_CONNECTION: Final = "Username-Password-Authentication"
# The app_metadata property that names the sign-up an account was made for.
INTENT_KEY: Final = "signup_intent"

# Retry-After hints (seconds) for the caller's 503.
_RETRY_OUTAGE: Final = 5.0
_RETRY_MISCONFIGURED: Final = 30.0
_RETRY_BUSY: Final = 1.0
# After a failed token request, answer from memory this long instead of asking again
# (the token endpoint has its own, small, rate limit).
_TOKEN_FAILURE_MEMO_SECONDS: Final = 1.0
# A 429 whose reset is already past (clock skew, one-second granularity) waits this long.
_MIN_LIMITED_WAIT: Final = 1.0
_MAX_ATTEMPTS: Final = 6
# A request that could not even be written (stale pooled connection) goes out again.
_STALE_RETRIES: Final = 2

_PASSWORD_MESSAGES: Final[dict[str, str]] = {
    "PasswordStrengthError": (
        "This password is too weak for our account system. Use a longer password, "
        "mixing upper- and lower-case letters, digits and symbols."
    ),
    "PasswordDictionaryError": (
        "This password is too common and easy to guess. Choose a less predictable one, "
        "for example a few unrelated words."
    ),
    "PasswordNoUserInfoError": (
        "This password contains your name or e-mail address. Choose one that does not."
    ),
    "PasswordHistoryError": (
        "This password has been used before on this account. Choose a new one."
    ),
}

_FIELD_MESSAGES: Final[dict[str, str]] = {
    "email": "This e-mail address was not accepted. Check it for typos.",
    "password": "This password was not accepted. Choose a different one.",
    "given_name": "This first name was not accepted (it may be too long).",
    "family_name": "This last name was not accepted (it may be too long).",
    "name": "This name was not accepted (it may be too long).",
}

_ON_PROPERTY = re.compile(r"on property ([A-Za-z_][A-Za-z0-9_.]*)")

# Configuration errors: nothing the person typed can fix them.
_CONFIG_ERROR_CODES: Final = frozenset(
    {
        "inexistent_connection",
        "connection_disabled",
        "operation_not_supported",
        "invalid_uri",
        "invalid_query_string",
        "insufficient_scope",
    }
)


def _now_utc() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------
# Pacing
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[None]
    deadline: float  # loop time


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class RateGate:
    """Holds Management API calls to the tenant's rate limit, first come first served.

    It learns the limit from each answer's `x-ratelimit-limit`, `-remaining` and `-reset`
    (UNIX epoch seconds when the bucket is full again) and keeps its own estimate of the
    calls it may still send: one granted call takes one from it. When none is left (or a
    429 came) calls wait in arrival order until the reset, each at most until its own
    deadline; one that would have to wait past it is refused at once with
    `ProviderUnavailable(retry_after=seconds until the reset)`.

    Until the first answer says how the tenant is metered, one call goes out alone and
    the others wait for its headers. An API that sends no rate-limit headers is not paced.

    Every `acquire` that returned must be matched by exactly one `release`.

    Counters for metrics: `waits` (calls that had to queue), `refused` (calls turned
    away with 503 because the wait would pass their deadline), `limited` (429 answers
    received), and the last known `limit`, `remaining` (the estimate), `reset_at`.
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall = wall_clock
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.waits = 0
        self.refused = 0
        self.limited = 0
        self._metered: bool | None = None  # None: not known yet
        self._probing = False
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return sum(1 for w in self._queue if not w.future.done())

    # -- taking a slot -----------------------------------------------------------------

    def _try_take(self) -> bool:
        if self._metered is False:
            self._in_flight += 1
            return True
        if self._metered is None or self.remaining is None:
            # Nothing known yet: one call at a time finds out.
            if self._probing:
                return False
            self._probing = True
            self._in_flight += 1
            return True
        if self.remaining > 0:
            self.remaining -= 1
            self._in_flight += 1
            return True
        if self.reset_at is not None and self._wall() >= self.reset_at:
            # The bucket has refilled; spend it, and learn the next reset from answers.
            self.remaining = (self.limit or 1) - 1
            self.reset_at = None
            self._in_flight += 1
            return True
        if self.reset_at is None and self._in_flight == 0:
            # Nothing in flight will tell us more: let one go and find out.
            self._in_flight += 1
            return True
        return False

    def _blocked_for(self) -> float | None:
        """Seconds until the known reset, when calls are held for it; else None."""
        if (
            self._metered
            and self.remaining is not None
            and self.remaining <= 0
            and self.reset_at is not None
        ):
            return max(0.0, self.reset_at - self._wall())
        return None

    async def acquire(self, deadline: float, *, first: bool = False) -> None:
        """Wait for a slot; `deadline` is in loop time. `first` puts a retry at the front."""
        queue = self._queue
        while queue and queue[0].future.done():
            queue.popleft()
        if (first or not queue) and self._try_take():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait = self._blocked_for()
        if wait is not None and now + wait > deadline:
            self.refused += 1
            raise ProviderUnavailable(
                "Auth0 rate limit: the wait for the next slot exceeds the queue deadline",
                retry_after=max(wait, _RETRY_BUSY),
            )
        waiter = _Waiter(loop.create_future(), deadline)
        if first:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        self.waits += 1
        metrics.RATE_LIMIT_WAITS.inc()
        self._arm(wait)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter.future
        except TimeoutError:
            if self._granted(waiter):
                return  # granted in the same instant the deadline passed: use it
            self.refused += 1
            blocked = self._blocked_for()
            raise ProviderUnavailable(
                "Auth0 rate limit: no slot within the queue deadline",
                retry_after=max(blocked or 0.0, _RETRY_BUSY),
            ) from None
        except asyncio.CancelledError:
            if self._granted(waiter):
                self.release(None)
            raise

    @staticmethod
    def _granted(waiter: _Waiter) -> bool:
        fut = waiter.future
        return fut.done() and not fut.cancelled() and fut.exception() is None

    # -- giving it back ----------------------------------------------------------------

    def release(self, headers: Mapping[str, str] | None, status: int | None = None) -> None:
        """Account for a finished call: `headers` of its answer, None when none came."""
        self._in_flight -= 1
        self._probing = False
        if status == 429:
            self.limited += 1
        if headers is not None:
            self._learn(headers, status)
        if self._queue:
            self._pump()

    def _learn(self, headers: Mapping[str, str], status: int | None) -> None:
        limit = _header_int(headers, "x-ratelimit-limit")
        remaining = _header_int(headers, "x-ratelimit-remaining")
        reset = _header_int(headers, "x-ratelimit-reset")
        now = self._wall()
        if remaining is None or reset is None:
            if status == 429:
                self._metered = True
                self.remaining = 0
                self.reset_at = now + _MIN_LIMITED_WAIT
            elif self._metered is None:
                self._metered = False  # this API does not say: do not pace it
            return
        self._metered = True
        if limit is not None:
            self.limit = limit
        if status == 429:
            estimate = 0
            reset_at = float(reset) if reset > now else now + _MIN_LIMITED_WAIT
        else:
            # Calls still in flight are not counted in this answer yet.
            estimate = max(0, remaining - self._in_flight)
            reset_at = float(reset)
            if self.remaining is not None and self.reset_at == reset_at:
                estimate = min(estimate, self.remaining)
        self.remaining = estimate
        self.reset_at = reset_at

    # -- waking waiters ----------------------------------------------------------------

    def _pump(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue = self._queue
        while queue:
            waiter = queue[0]
            if waiter.future.done():
                queue.popleft()
                continue
            if not self._try_take():
                break
            queue.popleft()
            waiter.future.set_result(None)
        if not queue:
            return
        wait = self._blocked_for()
        if wait is None:
            return  # an answer in flight will pump again
        loop = asyncio.get_running_loop()
        limit_at = loop.time() + wait
        kept: deque[_Waiter] = deque()
        for waiter in queue:
            if waiter.future.done():
                continue
            if limit_at > waiter.deadline:
                self.refused += 1
                waiter.future.set_exception(
                    ProviderUnavailable(
                        "Auth0 rate limit: the wait for the next slot exceeds the queue deadline",
                        retry_after=max(wait, _RETRY_BUSY),
                    )
                )
            else:
                kept.append(waiter)
        self._queue = kept
        self._arm(wait)

    def _arm(self, wait: float | None) -> None:
        if wait is None or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(wait + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._queue:
            self._pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._queue:
            if not waiter.future.done():
                waiter.future.set_exception(
                    ProviderUnavailable("Auth0 client closed", retry_after=_RETRY_OUTAGE)
                )
        self._queue.clear()


# --------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def error(self) -> tuple[str, str]:
        """(errorCode or error, message) of an error answer, empty strings if absent."""
        data = self.json()
        if not isinstance(data, dict):
            return "", ""
        code = data.get("errorCode") or data.get("error") or ""
        message = data.get("message") or data.get("error_description") or ""
        return str(code), str(message)


class Auth0IdentityProvider:
    """Creates users in an Auth0 database connection through the Management API."""

    name = "auth0"
    transactional = False

    def __init__(
        self,
        *,
        domain: str,
        client_id: str,
        client_secret: SecretStr,
        base_url: str | None = None,
        audience: str | None = None,
        connection: str = DEFAULT_CONNECTION,
        timeout_seconds: float = 10.0,
        queue_deadline_seconds: float = 5.0,
        max_connections: int = 512,
    ) -> None:
        self.domain = domain
        self.base_url = (base_url or f"https://{domain}").rstrip("/")
        self.audience = audience or f"https://{domain}/api/v2/"
        self.connection = connection
        self.timeout_seconds = timeout_seconds
        self.queue_deadline_seconds = queue_deadline_seconds
        self._client_id = client_id
        self._client_secret = client_secret
        self._max_connections = max_connections
        self._token_url = f"{self.base_url}/oauth/token"
        self._users_url = f"{self.base_url}/api/v2/users"
        self._by_email_url = f"{self.base_url}/api/v2/users-by-email"
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_task: asyncio.Task[str] | None = None
        self._token_failure: ProviderUnavailable | None = None
        self._token_failure_until = 0.0
        self.gate = RateGate()
        # Counters for metrics.
        self.token_requests = 0
        self.token_failures = 0
        self.outcome_unknown = 0
        self.unavailable = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth0IdentityProvider:
        if not (
            settings.auth0_domain and settings.auth0_client_id and settings.auth0_client_secret
        ):
            raise ValueError(
                "identity provider auth0 needs SIGNUP_AUTH0_DOMAIN, SIGNUP_AUTH0_CLIENT_ID "
                "and SIGNUP_AUTH0_CLIENT_SECRET"
            )
        return cls(
            domain=settings.auth0_domain,
            client_id=settings.auth0_client_id,
            client_secret=settings.auth0_client_secret,
            base_url=settings.auth0_base,
            audience=settings.auth0_api_audience,
            connection=settings.auth0_connection,
            timeout_seconds=settings.auth0_timeout_seconds,
            queue_deadline_seconds=settings.auth0_queue_deadline_seconds,
        )

    def __repr__(self) -> str:
        return (
            f"Auth0IdentityProvider(base_url={self.base_url!r}, client_id={self._client_id!r}, "
            f"connection={self.connection!r})"
        )

    # -- session -----------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        session = self._http
        if session is None or session.closed:
            t = self.timeout_seconds
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=15.0,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # `total` bounds the whole exchange; aiohttp reports a timeout before the
                # request went out as ConnectionTimeoutError, which we tell apart.
                timeout=aiohttp.ClientTimeout(total=t, connect=t, sock_connect=t, sock_read=t),
                headers={
                    "Accept": "application/json",
                    "User-Agent": "signup-auth0/1",
                },
                raise_for_status=False,
            )
            self._http = session
        return session

    async def close(self) -> None:
        self.gate.close()
        task = self._token_task
        if task is not None and not task.done():
            task.cancel()
        session, self._http = self._http, None
        if session is not None and not session.closed:
            await session.close()

    # -- token -------------------------------------------------------------------------

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._token_refresh_at:
            return token
        failure = self._token_failure
        if failure is not None and time.monotonic() < self._token_failure_until:
            raise ProviderUnavailable(failure.reason, retry_after=failure.retry_after)
        task = self._token_task
        if task is None:
            # One refresh at a time: every caller waits for the same request.
            task = asyncio.get_running_loop().create_task(self._fetch_token())
            task.add_done_callback(self._token_done)
            self._token_task = task
        try:
            return await asyncio.shield(task)
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(exc.reason, retry_after=exc.retry_after) from None

    def _token_done(self, task: asyncio.Task[str]) -> None:
        if self._token_task is task:
            self._token_task = None
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so an unawaited failure is not reported
        if isinstance(exc, ProviderUnavailable):
            self._token_failure = exc
            self._token_failure_until = time.monotonic() + _TOKEN_FAILURE_MEMO_SECONDS

    def _drop_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch_token(self) -> str:
        self.token_requests += 1
        started = time.monotonic()
        body = orjson.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "audience": self.audience,
            }
        )
        try:
            answer = await self._exchange("POST", self._token_url, body=body)
        except _NotSent as exc:
            self.token_failures += 1
            log.warning("auth0.token.unreachable", url=self._token_url, error=exc.detail)
            raise ProviderUnavailable(
                "Auth0 token endpoint unreachable", retry_after=_RETRY_OUTAGE
            ) from None
        except _Lost as exc:
            self.token_failures += 1
            log.warning("auth0.token.no_answer", url=self._token_url, error=exc.detail)
            raise ProviderUnavailable(
                "Auth0 token endpoint did not answer", retry_after=_RETRY_OUTAGE
            ) from None
        if answer.status == 200:
            data = answer.json()
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                self.token_failures += 1
                log.error("auth0.token.malformed", status=answer.status)
                raise ProviderUnavailable(
                    "Auth0 token answer had no access_token", retry_after=_RETRY_OUTAGE
                )
            try:
                expires_in = float(data.get("expires_in", 86400))
            except (TypeError, ValueError):
                expires_in = 86400.0
            refresh_in = max(min(expires_in * 0.9, expires_in - 60.0), expires_in * 0.5)
            self._token = token
            self._token_refresh_at = started + refresh_in
            self._token_failure = None
            log.debug("auth0.token.refreshed", expires_in=expires_in)
            return token
        self.token_failures += 1
        code, description = answer.error()
        if answer.status in (401, 403) or code in ("access_denied", "unauthorized_client"):
            # Our own configuration: wrong client id/secret, no client grant for the
            # audience, or client_credentials not allowed. The secret is never logged.
            log.error(
                "auth0.token.refused",
                status=answer.status,
                error=code,
                description=description,
                client_id=self._client_id,
                audience=self.audience,
                hint="check SIGNUP_AUTH0_CLIENT_ID/SECRET, the client grant and grant types",
            )
            raise ProviderUnavailable(
                f"Auth0 refused our client credentials ({code or answer.status})",
                retry_after=_RETRY_MISCONFIGURED,
            )
        retry_after = _RETRY_OUTAGE
        if answer.status == 429:
            reset = _header_int(answer.headers, "x-ratelimit-reset")
            if reset is not None:
                retry_after = max(_RETRY_BUSY, reset - time.time())
        log.warning("auth0.token.failed", status=answer.status, error=code)
        raise ProviderUnavailable(
            f"Auth0 token endpoint answered {answer.status}", retry_after=retry_after
        )

    # -- HTTP --------------------------------------------------------------------------

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Answer:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        session = self._session()
        for attempt in range(_STALE_RETRIES + 1):
            try:
                async with session.request(
                    method, url, data=body, headers=headers, params=params
                ) as resp:
                    raw = await resp.read()
                    return _Answer(resp.status, raw, resp.headers)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Refused, DNS, TLS handshake, connect timeout, waiting for a pooled
                # connection: the request never went out.
                raise _NotSent(f"{type(exc).__name__}: {exc}") from exc
            except aiohttp.ClientOSError as exc:
                if not _write_failed(exc):
                    raise _Lost(f"{type(exc).__name__}: {exc}") from exc
                # The request could not be written (a pooled keep-alive connection the
                # server had closed): nothing reached Auth0, so another connection may try.
                if attempt == _STALE_RETRIES:
                    raise _NotSent(f"{type(exc).__name__}: {exc}") from exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Read timeout, server disconnect, truncated answer: it may have been done.
                raise _Lost(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _management(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        writes: bool,
    ) -> _Answer:
        """One Management API call with token, pacing, 401 refresh and 429 waits.

        Returns the answer for any status but 401 (after one refresh) and 429.
        """
        deadline = asyncio.get_running_loop().time() + self.queue_deadline_seconds
        refreshed = False
        retry = False
        for _ in range(_MAX_ATTEMPTS):
            token = await self._access_token()
            await self.gate.acquire(deadline, first=retry)
            answer: _Answer | None = None
            try:
                answer = await self._exchange(method, url, body=body, token=token, params=params)
                metrics.PROVIDER_CALLS.labels("auth0", str(answer.status)).inc()
            except _NotSent as exc:
                metrics.PROVIDER_CALLS.labels("auth0", "not_sent").inc()
                self.unavailable += 1
                log.warning("auth0.unreachable", method=method, url=url, error=exc.detail)
                raise ProviderUnavailable(
                    "Auth0 is unreachable", retry_after=_RETRY_OUTAGE
                ) from None
            except _Lost as exc:
                metrics.PROVIDER_CALLS.labels("auth0", "no_answer").inc()
                log.warning("auth0.no_answer", method=method, url=url, error=exc.detail)
                if writes:
                    self.outcome_unknown += 1
                    raise OutcomeUnknown(
                        "Auth0 did not answer; the account may have been created",
                        retry_after=_RETRY_OUTAGE,
                    ) from None
                self.unavailable += 1
                raise ProviderUnavailable(
                    "Auth0 did not answer", retry_after=_RETRY_OUTAGE
                ) from None
            finally:
                self.gate.release(
                    answer.headers if answer is not None else None,
                    answer.status if answer is not None else None,
                )
            retry = True
            if answer.status == 401:
                self._drop_token(token)
                if refreshed:
                    self.unavailable += 1
                    log.error("auth0.unauthorized", method=method, url=url)
                    raise ProviderUnavailable(
                        "Auth0 refused our access token twice", retry_after=_RETRY_MISCONFIGURED
                    )
                refreshed = True
                continue
            if answer.status == 429:
                continue  # the gate now holds calls until the reset, or refuses
            return answer
        self.unavailable += 1
        raise ProviderUnavailable("Auth0 kept limiting our calls", retry_after=_RETRY_OUTAGE)

    # -- the port ----------------------------------------------------------------------

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        payload: dict[str, object] = {
            "connection": self.connection,
            "email": applicant.email,
            "password": password,
            "name": applicant.name,
        }
        if applicant.given_name is not None:
            payload["given_name"] = applicant.given_name
        if applicant.family_name is not None:
            payload["family_name"] = applicant.family_name
        if applicant.intent_id is not None:
            # Which sign-up made the account, read back by look-ups (never the password).
            payload["app_metadata"] = {INTENT_KEY: applicant.intent_id}
        body = orjson.dumps(payload)
        answer = await self._management("POST", self._users_url, body=body, writes=True)
        status = answer.status
        if status in (200, 201):
            data = answer.json()
            if not isinstance(data, dict) or not isinstance(data.get("user_id"), str):
                self.outcome_unknown += 1
                log.error("auth0.create.malformed", status=status)
                raise OutcomeUnknown(
                    "Auth0 answered the creation without a readable user",
                    retry_after=_RETRY_OUTAGE,
                )
            return _account(data, fallback_email=applicant.email)
        if status == 409:
            raise EmailAlreadyRegistered(applicant.email)
        code, message = answer.error()
        if status == 400:
            raise self._bad_request(code, message, password)
        if status >= 500:
            self.outcome_unknown += 1
            log.warning("auth0.create.server_error", status=status, error=code)
            raise OutcomeUnknown(
                f"Auth0 answered {status}; the account may have been created",
                retry_after=_RETRY_OUTAGE,
            )
        self.unavailable += 1
        log.error(
            "auth0.create.refused",
            status=status,
            error=code,
            message=_scrub(message, password),
        )
        raise ProviderUnavailable(
            f"Auth0 refused the call ({status} {code})".rstrip(), retry_after=_RETRY_MISCONFIGURED
        )

    def _bad_request(self, code: str, message: str, password: str) -> Exception:
        text = message.strip()
        for prefix, help_text in _PASSWORD_MESSAGES.items():
            if text.startswith(prefix):
                return FieldRejected("password", help_text)
        if code in _CONFIG_ERROR_CODES:
            self.unavailable += 1
            log.error(
                "auth0.create.misconfigured",
                error=code,
                message=_scrub(text, password),
                connection=self.connection,
            )
            return ProviderUnavailable(
                f"Auth0 configuration error ({code})", retry_after=_RETRY_MISCONFIGURED
            )
        if code == "invalid_body" or text.startswith("Payload validation error"):
            match = _ON_PROPERTY.search(text)
            field = match.group(1) if match else "body"
            if field == "connection":
                self.unavailable += 1
                log.error("auth0.create.misconfigured", error=code, field=field)
                return ProviderUnavailable(
                    "Auth0 refused our connection setting", retry_after=_RETRY_MISCONFIGURED
                )
            return FieldRejected(
                field,
                _FIELD_MESSAGES.get(field, "The identity provider did not accept this sign-up."),
            )
        if "username" in text.lower():
            return FieldRejected("username", "This username is already taken.")
        # Some other refusal of this person's data (e.g. a custom database script).
        log.warning("auth0.create.rejected", error=code, message=_scrub(text, password))
        return FieldRejected("body", "The identity provider did not accept this sign-up.")

    async def find_by_email(self, email: str) -> list[CreatedAccount]:
        answer = await self._management(
            "GET", self._by_email_url, params={"email": email}, writes=False
        )
        if answer.status != 200:
            code, _ = answer.error()
            self.unavailable += 1
            log.warning("auth0.lookup.failed", status=answer.status, error=code)
            retry_after = _RETRY_MISCONFIGURED if answer.status < 500 else _RETRY_OUTAGE
            raise ProviderUnavailable(
                f"Auth0 look-up answered {answer.status}", retry_after=retry_after
            )
        data = answer.json()
        if not isinstance(data, list):
            self.unavailable += 1
            raise ProviderUnavailable("Auth0 look-up answer was not a list")
        return [
            _account(item, fallback_email=email)
            for item in data
            if isinstance(item, dict) and isinstance(item.get("user_id"), str)
        ]


class _NotSent(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Lost(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _write_failed(exc: aiohttp.ClientOSError) -> bool:
    """True when aiohttp could not write the request at all (so it was never carried out)."""
    return isinstance(exc.strerror, str) and exc.strerror.startswith("Can not write request")


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def _parse_time(value: object) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return _now_utc()
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _now_utc()


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _account(data: dict[str, Any], *, fallback_email: str) -> CreatedAccount:
    email = data.get("email")
    app_metadata = data.get("app_metadata")
    intent = app_metadata.get(INTENT_KEY) if isinstance(app_metadata, dict) else None
    return CreatedAccount(
        user_id=data["user_id"],
        email=email if isinstance(email, str) else fallback_email,
        email_verified=bool(data.get("email_verified", False)),
        created_at=_parse_time(data.get("created_at")),
        given_name=_optional_str(data.get("given_name")),
        family_name=_optional_str(data.get("family_name")),
        name=_optional_str(data.get("name")),
        intent_id=_optional_str(intent),
    )


__all__ = ["Auth0IdentityProvider", "RateGate"]
