"""The Management API access token: client credentials, cached, one refresh at a time.

What each token answer means is in docs/auth0.md ("Token"). The secret goes only into the
request body; no log line or exception carries it.
"""

from __future__ import annotations

import asyncio
from typing import Final

import orjson
import structlog
from pydantic import SecretStr

from signup.adapters.auth0.clock import Clock
from signup.adapters.auth0.gate import header_int
from signup.adapters.auth0.retry_hints import RETRY_BUSY, RETRY_MISCONFIGURED, RETRY_OUTAGE
from signup.adapters.auth0.transport import HttpTransport, Lost, NotSent
from signup.domain.errors import ProviderUnavailable

log = structlog.get_logger(__name__)

# After a failed token request, answer from memory this long instead of asking again
# (the token endpoint has its own, small, rate limit).
_FAILURE_MEMO_SECONDS: Final = 1.0


class TokenCache:
    """Hands out a token, fetching a new one shortly before the cached one expires.

    Counters for metrics: `requests` (token requests sent) and `failures`.
    """

    def __init__(
        self,
        *,
        transport: HttpTransport,
        clock: Clock,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        audience: str,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._audience = audience
        self._token: str | None = None
        self._refresh_at = 0.0
        self._task: asyncio.Task[str] | None = None
        self._failure: ProviderUnavailable | None = None
        self._failure_until = 0.0
        self.requests = 0
        self.failures = 0

    async def get(self) -> str:
        token = self._token
        if token is not None and self._clock.monotonic() < self._refresh_at:
            return token
        failure = self._failure
        if failure is not None and self._clock.monotonic() < self._failure_until:
            raise ProviderUnavailable(failure.reason, retry_after=failure.retry_after)
        task = self._task
        if task is None:
            # One refresh at a time: every caller waits for the same request.
            task = asyncio.get_running_loop().create_task(self._fetch())
            task.add_done_callback(self._done)
            self._task = task
        try:
            return await asyncio.shield(task)
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(exc.reason, retry_after=exc.retry_after) from None

    def drop(self, token: str) -> None:
        """Auth0 refused `token`: the next `get` fetches another."""
        if self._token == token:
            self._token = None

    def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def _done(self, task: asyncio.Task[str]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so an unawaited failure is not reported
        if isinstance(exc, ProviderUnavailable):
            self._failure = exc
            self._failure_until = self._clock.monotonic() + _FAILURE_MEMO_SECONDS

    async def _fetch(self) -> str:
        self.requests += 1
        started = self._clock.monotonic()
        body = orjson.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "audience": self._audience,
            }
        )
        try:
            answer = await self._transport.exchange("POST", self._url, body=body)
        except NotSent as exc:
            self.failures += 1
            log.warning("auth0.token.unreachable", url=self._url, error=exc.detail)
            raise ProviderUnavailable(
                "Auth0 token endpoint unreachable", retry_after=RETRY_OUTAGE
            ) from None
        except Lost as exc:
            self.failures += 1
            log.warning("auth0.token.no_answer", url=self._url, error=exc.detail)
            raise ProviderUnavailable(
                "Auth0 token endpoint did not answer", retry_after=RETRY_OUTAGE
            ) from None
        if answer.status == 200:
            data = answer.json()
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                self.failures += 1
                log.error("auth0.token.malformed", status=answer.status)
                raise ProviderUnavailable(
                    "Auth0 token answer had no access_token", retry_after=RETRY_OUTAGE
                )
            try:
                expires_in = float(data.get("expires_in", 86400))
            except (TypeError, ValueError):
                expires_in = 86400.0
            refresh_in = max(min(expires_in * 0.9, expires_in - 60.0), expires_in * 0.5)
            self._token = token
            self._refresh_at = started + refresh_in
            self._failure = None
            log.debug("auth0.token.refreshed", expires_in=expires_in)
            return token
        self.failures += 1
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
                audience=self._audience,
                hint="check SIGNUP_AUTH0_CLIENT_ID/SECRET, the client grant and grant types",
            )
            raise ProviderUnavailable(
                f"Auth0 refused our client credentials ({code or answer.status})",
                retry_after=RETRY_MISCONFIGURED,
            )
        retry_after = RETRY_OUTAGE
        if answer.status == 429:
            reset = header_int(answer.headers, "x-ratelimit-reset")
            if reset is not None:
                retry_after = max(RETRY_BUSY, reset - self._clock.time())
        log.warning("auth0.token.failed", status=answer.status, error=code)
        raise ProviderUnavailable(
            f"Auth0 token endpoint answered {answer.status}", retry_after=retry_after
        )


__all__ = ["TokenCache"]
