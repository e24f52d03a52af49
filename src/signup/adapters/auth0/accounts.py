"""Auth0's user objects read into `CreatedAccount`, tolerant of absent or odd fields.

Two readings: the answer to our own create (`account_from`: the account is ours,
whatever else it says), and an account a look-up found (`adoptable_account`), which may
be adopted for a sign-up's intent only if it is on our connection and its `created_at`
says when it was made. An unreadable time is no reason to believe it was made after the
intent: such an account is not adoptable (no "now" stands in for it, issue 18).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from signup.domain.model import CreatedAccount

# The app_metadata property that names the sign-up an account was made for.
INTENT_KEY: Final = "signup_intent"


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time (naive ones taken as UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_identity(data: dict[str, Any]) -> dict[str, Any]:
    identities = data.get("identities")
    if isinstance(identities, list) and identities and isinstance(identities[0], dict):
        return identities[0]
    return {}


def _account(data: dict[str, Any], fallback_email: str, created_at: datetime) -> CreatedAccount:
    email = data.get("email")
    app_metadata = data.get("app_metadata")
    intent = app_metadata.get(INTENT_KEY) if isinstance(app_metadata, dict) else None
    user_metadata = data.get("user_metadata")
    identity = _first_identity(data)
    return CreatedAccount(
        user_id=data["user_id"],
        email=email if isinstance(email, str) else fallback_email,
        email_verified=bool(data.get("email_verified", False)),
        created_at=created_at,
        given_name=_optional_str(data.get("given_name")),
        family_name=_optional_str(data.get("family_name")),
        name=_optional_str(data.get("name")),
        intent_id=_optional_str(intent),
        user_metadata=user_metadata if isinstance(user_metadata, dict) and user_metadata else None,
        connection=_optional_str(identity.get("connection")),
        is_social=identity.get("isSocial") is True,
    )


def external_account(data: object) -> CreatedAccount | None:
    """An account Auth0 told us of (an event's `data.object`, a search's user), made by
    any path: a social login, the dashboard, the API, our own form. None when it cannot
    be announced: no user id, no e-mail address (some social providers give none), or
    no readable `created_at`."""
    if not isinstance(data, dict):
        return None
    user_id, email = data.get("user_id"), data.get("email")
    created_at = parse_time(data.get("created_at"))
    if not (isinstance(user_id, str) and user_id and isinstance(email, str) and "@" in email):
        return None
    if created_at is None:
        return None
    return _account(data, email, created_at)


def account_from(
    data: dict[str, Any], *, fallback_email: str, answered_at: datetime
) -> CreatedAccount:
    """The answer to our own create. Nothing is adopted here (we made the account), so
    an unreadable `created_at` only needs a time for the event: the answer's."""
    return _account(data, fallback_email, parse_time(data.get("created_at")) or answered_at)


def on_connection(data: dict[str, Any], connection: str) -> bool:
    """Whether one of the account's identities is in this database connection."""
    identities = data.get("identities")
    if not isinstance(identities, list):
        return False
    return any(isinstance(i, dict) and i.get("connection") == connection for i in identities)


def adoptable_account(
    data: dict[str, Any], *, fallback_email: str, connection: str
) -> CreatedAccount | None:
    """A look-up's account, or None when it may not be adopted for an intent: without a
    user id, on another connection (a social login, another database), or without a
    readable `created_at`."""
    created_at = parse_time(data.get("created_at"))
    if (
        created_at is None
        or not isinstance(data.get("user_id"), str)
        or not on_connection(data, connection)
    ):
        return None
    return _account(data, fallback_email, created_at)


__all__ = [
    "INTENT_KEY",
    "account_from",
    "adoptable_account",
    "external_account",
    "on_connection",
    "parse_time",
]
