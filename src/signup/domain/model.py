"""The sign-up: what a person asked for, and what became of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

from signup.domain.errors import StatusChangeRefused
from signup.domain.form import ConsentRecord

FieldValue = str | bool


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
    # The site's declared fields (name, value) and the record of each consent shown
    # (SIGNUP_FORM_FILE): empty without a form definition.
    fields: tuple[tuple[str, FieldValue], ...] = ()
    consents: tuple[ConsentRecord, ...] = ()

    def profile(self) -> dict[str, object] | None:
        """The declared fields and the consent record, as the account and the sign-up
        keep them (Auth0 `user_metadata`, the local store, the database); None if none."""
        if not self.fields and not self.consents:
            return None
        return {
            "fields": dict(self.fields),
            "consents": [record.as_data() for record in self.consents],
        }

    # The language the person was answered in (the page's): their welcome e-mail's too.
    # Not who they are: left out of equality and fingerprints.
    language: str | None = field(default=None, compare=False)

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
    # The declared fields and the consent record, as the provider keeps them
    # (`Applicant.profile`; Auth0's `user_metadata`).
    user_metadata: dict[str, object] | None = field(default=None, compare=False)
    # The provider's connection that holds it (Auth0: `identities[0].connection`), and
    # whether that is a social one (Google, GitHub, ...): None / False for the local store.
    connection: str | None = None
    is_social: bool = False
    # Only the local provider sets this: the Argon2id hash its own table stores.
    password_hash: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class SignUp:
    """One request for an account, from its intent (`pending`) to what became of it.

    The status changes are its own (`completed`, `existing`, `rejected`, `abandoned`): each
    refuses a move its rules forbid, and returns the sign-up in its next status rather than
    changing this one. A unit of work may run its work twice, and only the guarded update
    (`settle(..., expected=...)`, the database's half of the same rules) tells which change
    won: the state read at the start must stay as it was read.
    """

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

    def completed(self, user_id: str, event_id: str, answer: dict[str, object]) -> SignUp:
        """The account exists and `event_id` is its one event; `answer` is replayed as a 201.

        A sign-up given up for lost (`abandoned`) whose account turns up completes all the
        same: an account must never be left without its event.
        """
        self._may_become(SignUpStatus.CREATED, _SETTLED_BY_AN_ACCOUNT)
        return replace(
            self,
            status=SignUpStatus.CREATED,
            user_id=user_id,
            event_id=event_id,
            response_status=201,
            response_body=answer,
        )

    def existing(
        self, answer_status: int, answer: dict[str, object], user_id: str | None = None
    ) -> SignUp:
        """The address already had an account this sign-up did not make, or another sign-up
        completed with it first (`user_id`): no event of its own; `answer` is replayed."""
        self._may_become(SignUpStatus.EXISTING, _SETTLED_BY_AN_ACCOUNT)
        return replace(
            self,
            status=SignUpStatus.EXISTING,
            user_id=user_id,
            event_id=None,
            response_status=answer_status,
            response_body=answer,
        )

    def rejected(self, field_name: str, message: str, code: str | None = None) -> SignUp:
        """The provider refused a field; the refusal is replayed as a 422 on that field."""
        self._may_become(SignUpStatus.REJECTED, _ONLY_PENDING)
        body: dict[str, object] = {"field": field_name, "message": message}
        if code is not None:
            body["code"] = code
        return replace(self, status=SignUpStatus.REJECTED, response_status=422, response_body=body)

    def abandoned(self) -> SignUp:
        """Nothing was created: the Idempotency-Key is released so a retry starts afresh."""
        self._may_become(SignUpStatus.ABANDONED, _ONLY_PENDING)
        return replace(
            self, status=SignUpStatus.ABANDONED, idempotency_key=None, response_status=None
        )

    def _may_become(self, wanted: SignUpStatus, allowed_from: frozenset[SignUpStatus]) -> None:
        if self.status not in allowed_from:
            raise StatusChangeRefused(self.id, self.status.value, wanted.value)


_ONLY_PENDING = frozenset({SignUpStatus.PENDING})
_SETTLED_BY_AN_ACCOUNT = frozenset({SignUpStatus.PENDING, SignUpStatus.ABANDONED})
