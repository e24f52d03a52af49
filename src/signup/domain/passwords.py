"""The password rules, after NIST SP 800-63B: length and a block list, no composition rules."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib.resources import files

MIN_LENGTH = 8
MAX_LENGTH = 128


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = files("signup.domain").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line and not line.startswith("#")
    )


def _normalise(password: str) -> str:
    # NIST asks for Unicode normalisation so that look-alike forms compare equal.
    return unicodedata.normalize("NFKC", password)


def password_problem(
    password: str, email: str | None = None, site_name: str | None = None
) -> str | None:
    """Why this password is refused, in words for the person, or None when it is acceptable."""
    refusal = password_refusal(password, email, site_name)
    return None if refusal is None else refusal[1]


def password_refusal(
    password: str, email: str | None = None, site_name: str | None = None
) -> tuple[str, str] | None:
    """Why this password is refused: its stable code and the words for the person; or None."""
    # The length as typed (and as JSON Schema's minLength/maxLength count it); the other
    # rules compare the NFKC form, so look-alike spellings compare equal.
    if len(password) < MIN_LENGTH:
        return "password.too_short", f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return "password.too_long", f"Use at most {MAX_LENGTH} characters."
    normalised = _normalise(password)
    length = len(normalised)
    folded = normalised.casefold()
    if len(set(folded)) == 1:
        return (
            "password.repeated_character",
            "Don't repeat one character: choose a few unrelated words instead.",
        )
    if email:
        address = email.casefold()
        local = address.split("@", 1)[0]
        if folded in (address, local) or (
            len(local) >= 4 and folded.startswith(local) and length - len(local) < 4
        ):
            return "password.is_email", "Don't use your e-mail address as your password."
    if site_name and folded.replace(" ", "") == site_name.casefold().replace(" ", ""):
        return "password.is_site_name", "Don't use the site's name as your password."
    if folded in common_passwords():
        return (
            "password.too_common",
            "This password is too common and easy to guess: choose a longer, less usual one.",
        )
    return None
