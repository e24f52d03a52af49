"""The sign-up: what a person asked for, and what became of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class SignUpStatus(enum.StrEnum):
    PENDING = "pending"  # intent recorded; the provider's answer is not known yet
    CREATED = "created"  # the account exists and its event is in the outbox
    EXISTING = "existing"  # the e-mail was already registered (not by this sign-up)
    REJECTED = "rejected"  # the provider refused it (password policy, invalid body)
    ABANDONED = "abandoned"  # reconciliation found no account: nothing was created


@dataclass(frozen=True, slots=True)
class Applicant:
    """The validated, normalised person asking for an account (the password travels apart)."""

    email: str
    given_name: str | None = None
    family_name: str | None = None
    # The sign-up (its id) this request for an account belongs to, set only on the way to
    # the provider, which marks the account with it: a later look-up then tells the
    # account this sign-up made from one someone else made. Not part of who the person
    # is: equality, fingerprints and events leave it out.
    intent_id: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        parts = [p for p in (self.given_name, self.family_name) if p]
        return " ".join(parts) if parts else self.email


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    """What the identity provider answered for a new account."""

    user_id: str
    email: str
    email_verified: bool
    created_at: datetime
    given_name: str | None = None
    family_name: str | None = None
    name: str | None = None
    # The sign-up whose request made the account (`Applicant.intent_id`), as the provider
    # kept it; None for an account made some other way.
    intent_id: str | None = None
    # Only the local provider sets this: the Argon2id hash its own table stores.
    password_hash: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class SignUp:
    id: str
    applicant: Applicant
    status: SignUpStatus
    provider: str
    requested_at: datetime
    idempotency_key: str | None = None
    fingerprint: str | None = None
    user_id: str | None = None
    event_id: str | None = None
    response_status: int | None = None
    response_body: dict[str, object] | None = field(default=None)
