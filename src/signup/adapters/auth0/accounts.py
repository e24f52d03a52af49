"""Auth0's user objects read into `CreatedAccount`, tolerant of absent or odd fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from signup.domain.model import CreatedAccount

# The app_metadata property that names the sign-up an account was made for.
INTENT_KEY: Final = "signup_intent"


def _now_utc() -> datetime:
    return datetime.now(UTC)


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


def account_from(data: dict[str, Any], *, fallback_email: str) -> CreatedAccount:
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


__all__ = ["INTENT_KEY", "account_from"]
