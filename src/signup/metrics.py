"""Prometheus metrics of the service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SIGNUPS = Counter("signup_signups_total", "Sign-up requests by outcome", ["outcome"])
SIGNUP_LATENCY = Histogram(
    "signup_signup_seconds",
    "Time to answer POST /user/signup",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROVIDER_CALLS = Counter(
    "signup_provider_calls_total",
    "Identity provider calls by provider and result",
    ["provider", "result"],
)
RATE_LIMIT_WAITS = Counter(
    "signup_provider_rate_limit_waits_total", "Calls held back to respect the provider's rate limit"
)
RATE_LIMITED = Counter(
    "signup_rate_limited_total", "Sign-ups refused by our own rate limit", ["limit"]
)
OUTBOX_PENDING = Gauge("signup_outbox_pending", "Events not yet confirmed by the broker")
OUTBOX_OLDEST_AGE = Gauge(
    "signup_outbox_oldest_pending_seconds", "Age of the oldest unpublished event"
)
PUBLISHES = Counter("signup_publishes_total", "Outbox publishes by result", ["result"])
RECONCILIATIONS = Counter("signup_reconciliations_total", "Pending sign-ups settled", ["result"])
# Every refusal of a sign-up, by its stable code (`email.domain_refused`,
# `password.breached`, `honeypot`, `too_many_attempts.ip`, …; docs/abuse.md).
REFUSALS = Counter("signup_refusals_total", "Sign-ups refused, by reason", ["reason"])
BREACHED_CHECKS = Counter(
    "signup_breached_checks_total",
    "Breached-password checks by result (breached, clean, unavailable_open, unavailable_closed)",
    ["result"],
)
BREACHED_LOOKUPS = Counter(
    "signup_breached_lookups_total",
    "Range look-ups by how they were answered (fetched, cached, shared, failed)",
    ["result"],
)
ANNOUNCED = Counter(
    "signup_accounts_announced_total",
    "Accounts given their one user.new, by the path that saw them first",
    ["origin"],
)
AUTH0_EVENTS = Counter(
    "signup_auth0_events_total",
    "POST /hooks/auth0 deliveries by result",
    ["result"],
)
SWEEP_ACCOUNTS = Counter(
    "signup_sweep_accounts_total", "Accounts the sweep's user search returned", ["result"]
)
