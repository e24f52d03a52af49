"""Every setting of the service, typed, in one place (environment and `.env`)."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from signup.addresses import normalise_origin, parse_networks, split_amqp_urls

# A challenge key shorter than this is refused: it signs every challenge handed out.
CHALLENGE_KEY_MIN = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIGNUP_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        # A refused value is not repeated: SIGNUP_AMQP_URL and others carry secrets.
        hide_input_in_errors=True,
    )

    database_url: str = "sqlite+aiosqlite:///./var/signup.db"
    # SQLite only: `full` syncs the WAL at each commit (one sync per group-commit batch),
    # so no answered or provider-created sign-up is lost in a power loss; `normal` skips
    # that sync, accepting that risk (docs/decisions/0017-sqlite-durability.md).
    sqlite_synchronous: Literal["full", "normal"] = "full"
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    exchange: str = "users"
    event_source: str = "urn:signup:naked-coders"

    identity_provider: Literal["local", "auth0"] = "local"
    auth0_domain: str | None = None
    auth0_client_id: str | None = None
    auth0_client_secret: SecretStr | None = None
    auth0_connection: str = "Username-Password-Authentication"
    auth0_audience: str | None = None
    auth0_base_url: str | None = None
    auth0_timeout_seconds: float = 10.0
    # How long a sign-up may wait in line for Auth0's rate limit before it is answered 503.
    auth0_queue_deadline_seconds: float = 5.0
    # POST /hooks/auth0 (Auth0's events): off (404) until a credential is set; the
    # stream's bearer token, or its basic credentials.
    auth0_events_token: SecretStr | None = None
    auth0_events_username: str | None = None
    auth0_events_password: SecretStr | None = None
    # The sweep beside the relay (None: off), and how far each run reaches back before
    # the last one's end (the search index trails writes).
    auth0_sweep_every_seconds: float | None = Field(default=None, gt=0)
    auth0_sweep_overlap_seconds: float = Field(default=60.0, ge=0)

    # The way on to sign-in (entrypoints/web/hand_over.py): the site's sign-in page and
    # where the success panel continues; with Auth0, by default, Universal Login for the
    # site's own (login) application, on its custom domain if it has one.
    sign_in_url: str | None = None
    after_signup_url: str | None = None
    auth0_login_client_id: str | None = None
    auth0_login_redirect_uri: str | None = None
    auth0_login_domain: str | None = None

    site_name: str = "Naked Coders"
    site_url: str = "http://127.0.0.1:8000"
    brand_dir: Path | None = None
    # The site's extra fields and consents (TOML; docs/form.md). None: the built-in form.
    form_file: Path | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Local provider: the key (at least 32 characters) that signs the welcome e-mail's
    # verification link, and how long a link works. Unset: no link, nothing verifies
    # (web service and welcome-e-mail worker need the same key).
    verify_key: SecretStr | None = None
    verify_ttl_seconds: int = Field(default=432_000, ge=60, le=90 * 86_400)

    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "welcome@localhost"

    crm_url: str | None = None
    crm_secret: SecretStr | None = None
    crm_timeout_seconds: float = 10.0

    rate_limit_per_ip: str = "20/minute"
    rate_limit_per_email: str = "5/hour"
    redis_url: SecretStr | None = None
    trust_forwarded_for: bool = False

    hide_existing_accounts: bool = False
    web_concurrency: int = Field(default=1, ge=1, le=64)
    # `auto`: console lines when stderr is a terminal, JSON otherwise (log_config.py).
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    relay_poll_seconds: float = Field(default=1.0, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    relay_lease_seconds: float = Field(default=30.0, gt=0)
    reconcile_after_seconds: float = Field(default=120.0, ge=0)
    reconcile_every_seconds: float = Field(default=60.0, gt=0)
    # Retention: published outbox rows and processed event ids older than this are
    # deleted, a batch at a time, beside the relay and in each worker. A replay can
    # only re-send what the outbox still holds; keep processed ids longer than outbox
    # rows so a replayed event is still recognised as done.
    outbox_retention_days: float = Field(default=7.0, gt=0)
    processed_retention_days: float = Field(default=30.0, gt=0)
    # Settled sign-ups (their stored Idempotency-Key answers among them); pending ones stay.
    signup_retention_days: float = Field(default=30.0, gt=0)
    prune_every_seconds: float = Field(default=300.0, gt=0)
    prune_batch_size: int = Field(default=500, ge=1, le=10_000)
    prune_pause_seconds: float = Field(default=0.05, ge=0)

    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)

    worker_prefetch: int = Field(default=16, ge=1)
    worker_retry_delays_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 30.0, 300.0, 1800.0]
    )
    worker_delivery_limit: int = Field(default=20, ge=1)

    @field_validator("allowed_origins", "worker_retry_delays_seconds", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_addresses(cls, value: SecretStr) -> SecretStr:
        split_amqp_urls(value.get_secret_value())  # its errors never carry the password
        return value

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """Every broker address of SIGNUP_AMQP_URL, in the order written (secrets)."""
        return split_amqp_urls(self.amqp_url.get_secret_value())

    @model_validator(mode="after")
    def _auth0_needs_credentials(self) -> Settings:
        if self.identity_provider == "auth0":
            missing = [
                name
                for name, value in (
                    ("SIGNUP_AUTH0_DOMAIN", self.auth0_domain),
                    ("SIGNUP_AUTH0_CLIENT_ID", self.auth0_client_id),
                    ("SIGNUP_AUTH0_CLIENT_SECRET", self.auth0_client_secret),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"identity provider auth0 needs {', '.join(missing)}")
        if bool(self.auth0_events_username) != bool(self.auth0_events_password):
            raise ValueError(
                "SIGNUP_AUTH0_EVENTS_USERNAME and SIGNUP_AUTH0_EVENTS_PASSWORD go together"
            )
        if self.auth0_events_token is not None and 0 < len(self.auth0_events_token) < 16:
            raise ValueError("SIGNUP_AUTH0_EVENTS_TOKEN must be at least 16 characters")
        return self

    @field_validator("sign_in_url", "after_signup_url", "auth0_login_redirect_uri")
    @classmethod
    def _absolute_or_own_path(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        split = urlsplit(value)
        own_path = value.startswith("/") and not value.startswith("//")
        absolute = split.scheme in ("http", "https") and bool(split.netloc)
        if not (own_path or absolute) or any(c in value for c in '"<> \t\r\n'):
            raise ValueError(f"{value!r} is not an http(s) URL or a path on this site")
        return value

    @field_validator("auth0_login_domain")
    @classmethod
    def _bare_host(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?", value.strip()):
            raise ValueError(f"{value!r} is not a host name (e.g. login.example.com)")
        return value.strip()

    @field_validator("verify_key")
    @classmethod
    def _verify_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 32:
            raise ValueError("SIGNUP_VERIFY_KEY needs at least 32 characters")
        return value

    @property
    def verifies_email(self) -> bool:
        """Local accounts get a verification link (the local provider, with a key)."""
        return self.identity_provider == "local" and self.verify_key is not None

    @model_validator(mode="after")
    def _login_application_whole(self) -> Settings:
        client, redirect = self.auth0_login_client_id, self.auth0_login_redirect_uri
        if bool(client) != bool(redirect):
            raise ValueError(
                "SIGNUP_AUTH0_LOGIN_CLIENT_ID and SIGNUP_AUTH0_LOGIN_REDIRECT_URI go together "
                "(Universal Login needs the application and its callback URL)"
            )
        if redirect and not redirect.startswith(("http://", "https://")):
            raise ValueError("SIGNUP_AUTH0_LOGIN_REDIRECT_URI must be an absolute URL")
        return self

    @property
    def auth0_events_enabled(self) -> bool:
        return bool(self.auth0_events_token or self.auth0_events_username)

    @cached_property
    def auth0_base(self) -> str:
        base = self.auth0_base_url or f"https://{self.auth0_domain}"
        return base.rstrip("/")

    @cached_property
    def auth0_api_audience(self) -> str:
        return self.auth0_audience or f"https://{self.auth0_domain}/api/v2/"

    @cached_property
    def origins(self) -> frozenset[str]:
        """Origins whose browsers may post the form; the service's own is always one."""
        own = self.site_url.rstrip("/")
        return frozenset({own, *(o.rstrip("/") for o in self.allowed_origins)})

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # The per-address limit's client address (entrypoints/web/client_ip.py): the proxies
    # whose X-Forwarded-For entries are believed (addresses or networks, comma-separated;
    # setting them turns X-Forwarded-For on), and the IPv6 network counted as one client.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_ipv6_prefix: int = Field(default=64, ge=16, le=128)

    @field_validator("trusted_proxies", "ops_allowed_hosts", mode="before")
    @classmethod
    def _proxies_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_normalised(cls, value: list[str]) -> list[str]:
        normalised = []
        for origin in value:
            canonical = normalise_origin(origin)
            if canonical is None:
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
            normalised.append(canonical)
        return normalised

    @model_validator(mode="after")
    def _several_processes_share_limits(self) -> Settings:
        # In memory each web process would count alone: N processes, N times the limit.
        limits_on = any(
            spec.strip() for spec in (self.rate_limit_per_ip, self.rate_limit_per_email)
        )
        shared = self.redis_url is not None and self.redis_url.get_secret_value().strip()
        if self.web_concurrency > 1 and limits_on and not shared:
            raise ValueError(
                f"SIGNUP_WEB_CONCURRENCY={self.web_concurrency} with rate limits on needs "
                "SIGNUP_REDIS_URL: without a shared store each web process counts attempts "
                f"alone and lets {self.web_concurrency} times the limit through. Set "
                "SIGNUP_REDIS_URL, or SIGNUP_WEB_CONCURRENCY=1, or turn both limits off "
                "(SIGNUP_RATE_LIMIT_PER_IP= SIGNUP_RATE_LIMIT_PER_EMAIL=)."
            )
        return self

    # Operations endpoints (/metrics, /openapi.json, /docs) are served by `signup serve`
    # on a port of their own, on loopback unless told otherwise; an empty
    # SIGNUP_OPS_PORT serves no operations port. SIGNUP_OPS_ON_PUBLIC_PORT=true (for
    # development) serves them on the public port too.
    ops_host: str = "127.0.0.1"
    ops_port: int | None = Field(default=9100, ge=1, le=65535)
    ops_on_public_port: bool = False
    # Host names the operations port answers to besides IP literals, `localhost` and
    # SIGNUP_OPS_HOST: a page that rebinds its own name to our address gets nothing.
    ops_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("ops_port", "auth0_sweep_every_seconds", mode="before")
    @classmethod
    def _empty_ops_port_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    # Server limits (`signup serve`, entrypoints/web/server.py), per web process: the
    # request line and headers at most this many bytes and fields (431 past them), the
    # time a request's headers have to arrive (408, or a silent close when nothing came),
    # the idle time between requests on a kept-alive connection, the connections held
    # (idle ones are closed to make room), and the Argon2 hashes waiting for a thread in
    # local mode (past them: 503 with Retry-After).
    max_header_bytes: int = Field(default=16384, ge=1024, le=1_048_576)
    max_headers: int = Field(default=100, ge=8, le=10_000)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # A body that has not all come this long after its head is a slow-body client.
    body_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    max_connections: int = Field(default=1000, ge=16, le=100_000)
    argon2_queue: int = Field(default=64, ge=0, le=100_000)

    # Proof of work on the form (docs/abuse.md, "Proof of work"): `pow` hands out ALTCHA
    # challenges signed with `challenge_key` at GET /signup/challenge and refuses a
    # sign-up without a fresh, unused solution. Keys listed in `challenge_previous_keys`
    # are still accepted, so a rotated key refuses none of the challenges already handed
    # out. `challenge_difficulty` is ALTCHA's maxnumber: the page tries half of it on
    # average.
    challenge: Literal["off", "pow"] = "off"
    challenge_key: SecretStr | None = None
    challenge_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    challenge_difficulty: int = Field(default=75_000, ge=1_000, le=10_000_000)
    challenge_ttl_seconds: int = Field(default=300, ge=10, le=86_400)

    @field_validator("challenge_previous_keys", mode="before")
    @classmethod
    def _previous_keys_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # Abuse controls (docs/abuse.md). Mail domains: throwaway ones (the
    # `disposable-email-domains` package's list) are refused always, these too; a
    # non-empty allow list admits only its domains. Sub-domains count as their domain.
    email_domains_deny: Annotated[list[str], NoDecode] = Field(default_factory=list)
    email_domains_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("email_domains_deny", "email_domains_allow", mode="before")
    @classmethod
    def _domains_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _challenge_needs_key(self) -> Settings:
        if self.challenge == "off":
            return self
        key = self.challenge_key.get_secret_value() if self.challenge_key else ""
        if len(key) < CHALLENGE_KEY_MIN:
            raise ValueError(
                f"SIGNUP_CHALLENGE=pow needs SIGNUP_CHALLENGE_KEY of at least "
                f"{CHALLENGE_KEY_MIN} characters, the same in every web process (e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self

    # Breached passwords: a Pwned Passwords range API, asked with the first five hex
    # digits of the password's SHA-1 only; a password seen at least `min_count` times
    # is refused. `fail`: what a failed look-up (slow, down) means, accept (`open`) or
    # 503 (`closed`). Range answers are cached per process for `cache_seconds`.
    breached_passwords: Literal["off", "check"] = "off"
    breached_api_url: str = "https://api.pwnedpasswords.com"
    breached_min_count: int = Field(default=1, ge=1)
    breached_fail: Literal["open", "closed"] = "open"
    breached_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    breached_cache_seconds: float = Field(default=300.0, ge=0)
    breached_cache_size: int = Field(default=1024, ge=1, le=1_000_000)
