"""The tenant's password policy: strength levels, dictionary, personal data, history.

Levels and messages as docs/auth0.md lists them. Auth0 answers every refusal with a 400
whose message starts with the rule's name; the service turns those into a 422 on the
password field, so the names must stay as Auth0 spells them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .answers import ApiError
from .config import StandinConfig

_REPEATS = re.compile(r"(.)\1\1")
_PERSONAL_FIELDS = ("given_name", "family_name", "name", "nickname", "username")


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


def check_password(
    config: StandinConfig, password: str, email: str, body: Mapping[str, Any]
) -> None:
    """Raise the 400 Auth0 gives for the first rule `password` breaks; `email` lower-cased."""
    if not password_meets_policy(password, config.password_policy):
        raise ApiError(400, "PasswordStrengthError: Password is too weak")
    lowered = password.lower()
    if lowered in config.password_dictionary:
        raise ApiError(400, "PasswordDictionaryError: Password is too common")
    if config.password_no_personal_info:
        infos = {email, email.split("@", 1)[0]}
        for key in _PERSONAL_FIELDS:
            value = body.get(key)
            if isinstance(value, str):
                infos.update(part for part in re.split(r"[\s@.]+", value.lower()) if part)
        if any(len(info) >= 3 and info in lowered for info in infos):
            raise ApiError(400, "PasswordNoUserInfoError: Password contains user information")
    if password in config.password_history:
        raise ApiError(400, "PasswordHistoryError: Password has previously been used")
