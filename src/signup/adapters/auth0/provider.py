"""Auth0 as the identity provider: what each Management API answer means for a sign-up.

Two Management API calls are made (see docs/auth0.md): `POST /api/v2/users` and
`GET /api/v2/users-by-email`, each with a cached token (`token.py`), paced by the
`RateGate` (`gate.py`) and sent over one aiohttp session (`transport.py`).

What an answer means for the caller:

- nothing was sent (refused connection, DNS, connect timeout), a 4xx that is our own
  misconfiguration, a 429 whose reset lies past the queue deadline → `ProviderUnavailable`;
- the request went out but its answer was lost (read timeout, disconnect, 5xx) →
  `OutcomeUnknown`: the account may exist and the caller reconciles later;
- the person's data was refused → `FieldRejected` (on the field Auth0 named, with our own
  words); the e-mail is taken → `EmailAlreadyRegistered` (a 409 is never retried).

The password only ever lives in the request body; no exception text, log line or repr
carries it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import orjson
import structlog
from pydantic import SecretStr

from signup import metrics
from signup.adapters.auth0.accounts import INTENT_KEY, account_from, adoptable_account
from signup.adapters.auth0.clock import Clock, LoopClock
from signup.adapters.auth0.gate import RateGate
from signup.adapters.auth0.retry_hints import RETRY_MISCONFIGURED, RETRY_OUTAGE
from signup.adapters.auth0.token import TokenCache
from signup.adapters.auth0.transport import Answer, HttpTransport, Lost, NotSent
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

_MAX_ATTEMPTS: Final = 6

# Auth0's refusal -> our stable code (docs/contract.md) and the words for the person.
_PASSWORD_CODES: Final[dict[str, str]] = {
    "PasswordStrengthError": "password.too_weak",
    "PasswordDictionaryError": "password.too_common",
    "PasswordNoUserInfoError": "password.contains_user_info",
    "PasswordHistoryError": "password.used_before",
}
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


class Auth0IdentityProvider:
    """Creates users in an Auth0 database connection through the Management API.

    `clock` drives the token cache and the rate gate; tests pass a
    `signup.testing.clock.ManualClock` to move past a token's lifetime or a rate-limit
    reset without waiting for it.
    """

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
        clock: Clock | None = None,
    ) -> None:
        self.domain = domain
        self.base_url = (base_url or f"https://{domain}").rstrip("/")
        self.audience = audience or f"https://{domain}/api/v2/"
        self.connection = connection
        self.timeout_seconds = timeout_seconds
        self.queue_deadline_seconds = queue_deadline_seconds
        self._client_id = client_id
        self._clock: Clock = clock or LoopClock()
        self._users_url = f"{self.base_url}/api/v2/users"
        self._by_email_url = f"{self.base_url}/api/v2/users-by-email"
        self._transport = HttpTransport(
            timeout_seconds=timeout_seconds, max_connections=max_connections
        )
        self._tokens = TokenCache(
            transport=self._transport,
            clock=self._clock,
            token_url=f"{self.base_url}/oauth/token",
            client_id=client_id,
            client_secret=client_secret,
            audience=self.audience,
        )
        self.gate = RateGate(clock=self._clock)
        # Counters for metrics (with the token cache's and the gate's).
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

    @property
    def token_requests(self) -> int:
        return self._tokens.requests

    @property
    def token_failures(self) -> int:
        return self._tokens.failures

    async def close(self) -> None:
        self.gate.close()
        self._tokens.close()
        await self._transport.close()

    @property
    def users_url(self) -> str:
        return self._users_url

    async def management(
        self, method: str, url: str, *, params: Mapping[str, str] | None = None
    ) -> Answer:
        """A read of the Management API through the same token, gate and retries as the
        sign-ups' calls (the sweep's user search, `search.py`)."""
        return await self._management(method, url, params=params, writes=False)

    async def _management(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        writes: bool,
    ) -> Answer:
        """One Management API call with token, pacing, 401 refresh and 429 waits.

        Returns the answer for any status but 401 (after one refresh) and 429.
        """
        deadline = self._clock.monotonic() + self.queue_deadline_seconds
        refreshed = False
        retry = False
        for _ in range(_MAX_ATTEMPTS):
            token = await self._tokens.get()
            ticket = await self.gate.acquire(deadline, first=retry)
            answer: Answer | None = None
            try:
                answer = await self._transport.exchange(
                    method, url, body=body, token=token, params=params
                )
                metrics.PROVIDER_CALLS.labels("auth0", str(answer.status)).inc()
            except NotSent as exc:
                metrics.PROVIDER_CALLS.labels("auth0", "not_sent").inc()
                self.unavailable += 1
                log.warning("auth0.unreachable", method=method, url=url, error=exc.detail)
                raise ProviderUnavailable(
                    "Auth0 is unreachable", retry_after=RETRY_OUTAGE
                ) from None
            except Lost as exc:
                metrics.PROVIDER_CALLS.labels("auth0", "no_answer").inc()
                log.warning("auth0.no_answer", method=method, url=url, error=exc.detail)
                if writes:
                    self.outcome_unknown += 1
                    raise OutcomeUnknown(
                        "Auth0 did not answer; the account may have been created",
                        retry_after=RETRY_OUTAGE,
                    ) from None
                self.unavailable += 1
                raise ProviderUnavailable(
                    "Auth0 did not answer", retry_after=RETRY_OUTAGE
                ) from None
            finally:
                self.gate.release(
                    answer.headers if answer is not None else None,
                    answer.status if answer is not None else None,
                    ticket=ticket,
                )
            retry = True
            if answer.status == 401:
                self._tokens.drop(token)
                if refreshed:
                    self.unavailable += 1
                    log.error("auth0.unauthorized", method=method, url=url)
                    raise ProviderUnavailable(
                        "Auth0 refused our access token twice", retry_after=RETRY_MISCONFIGURED
                    )
                refreshed = True
                continue
            if answer.status == 429:
                continue  # the gate now holds calls until the reset, or refuses
            return answer
        self.unavailable += 1
        raise ProviderUnavailable("Auth0 kept limiting our calls", retry_after=RETRY_OUTAGE)

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
        profile = applicant.profile()
        if profile is not None:
            # The declared fields and the consent record travel with the account.
            payload["user_metadata"] = profile
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
                    retry_after=RETRY_OUTAGE,
                )
            return account_from(data, fallback_email=applicant.email, answered_at=datetime.now(UTC))
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
                retry_after=RETRY_OUTAGE,
            )
        self.unavailable += 1
        log.error(
            "auth0.create.refused",
            status=status,
            error=code,
            message=_scrub(message, password),
        )
        raise ProviderUnavailable(
            f"Auth0 refused the call ({status} {code})".rstrip(), retry_after=RETRY_MISCONFIGURED
        )

    def _bad_request(self, code: str, message: str, password: str) -> Exception:
        text = message.strip()
        for prefix, help_text in _PASSWORD_MESSAGES.items():
            if text.startswith(prefix):
                return FieldRejected("password", help_text, _PASSWORD_CODES[prefix])
        if code in _CONFIG_ERROR_CODES:
            self.unavailable += 1
            log.error(
                "auth0.create.misconfigured",
                error=code,
                message=_scrub(text, password),
                connection=self.connection,
            )
            return ProviderUnavailable(
                f"Auth0 configuration error ({code})", retry_after=RETRY_MISCONFIGURED
            )
        if code == "invalid_body" or text.startswith("Payload validation error"):
            match = _ON_PROPERTY.search(text)
            field = match.group(1) if match else "body"
            if field == "connection":
                self.unavailable += 1
                log.error("auth0.create.misconfigured", error=code, field=field)
                return ProviderUnavailable(
                    "Auth0 refused our connection setting", retry_after=RETRY_MISCONFIGURED
                )
            return FieldRejected(
                field,
                _FIELD_MESSAGES.get(field, "The identity provider did not accept this sign-up."),
                f"{field}.refused_by_provider",
            )
        if "username" in text.lower():
            return FieldRejected("username", "This username is already taken.", "username.taken")
        # Some other refusal of this person's data (e.g. a custom database script).
        log.warning("auth0.create.rejected", error=code, message=_scrub(text, password))
        return FieldRejected(
            "body", "The identity provider did not accept this sign-up.", "body.refused_by_provider"
        )

    async def find_by_email(self, email: str) -> list[CreatedAccount]:
        answer = await self._management(
            "GET", self._by_email_url, params={"email": email}, writes=False
        )
        if answer.status != 200:
            code, _ = answer.error()
            self.unavailable += 1
            log.warning("auth0.lookup.failed", status=answer.status, error=code)
            retry_after = RETRY_MISCONFIGURED if answer.status < 500 else RETRY_OUTAGE
            raise ProviderUnavailable(
                f"Auth0 look-up answered {answer.status}", retry_after=retry_after
            )
        data = answer.json()
        if not isinstance(data, list):
            self.unavailable += 1
            raise ProviderUnavailable("Auth0 look-up answer was not a list")
        # Only accounts that may be adopted for an intent (accounts.py): the 409 owner's
        # check and reconciliation look for nothing else.
        found = (
            adoptable_account(item, fallback_email=email, connection=self.connection)
            for item in data
            if isinstance(item, dict)
        )
        return [account for account in found if account is not None]


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


__all__ = ["DEFAULT_CONNECTION", "Auth0IdentityProvider"]
