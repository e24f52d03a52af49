"""What identifies a sign-up request, its answer, and the account made for it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import orjson
import uuid_utils

from signup.domain.model import Applicant, CreatedAccount, SignUp


@dataclass(frozen=True, slots=True)
class Registered:
    user_id: str
    email: str
    replayed: bool = False

    def body(self) -> dict[str, object]:
        return {"user_id": self.user_id, "email": self.email}


def fingerprint(applicant: Applicant) -> str:
    """What identifies a request for Idempotency-Key checks, without the password.

    Nothing derived from the password may be stored, so two requests that differ only in
    their password count as the same request.
    """
    parts: list[object] = [applicant.email, applicant.given_name, applicant.family_name]
    if applicant.fields or applicant.consents:  # a form's answers are part of the request
        parts += [dict(applicant.fields), {r.id: r.accepted for r in applicant.consents}]
    canonical = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def time_ordered_id() -> str:
    """A UUIDv7 (RFC 9562): ids made later sort later, so a new sign-up's or event's id
    lands at the end of its index, in pages the last commits already touched, where a
    random UUIDv4 dirtied a page anywhere in its index at every insert
    (docs/decisions/0010). The time it carries is the event's own `time`."""
    return str(uuid_utils.uuid7())


# How far the provider's clock (an account's created_at) may trail ours (an intent's
# requested_at) for an account made by the intent's own request.
CLOCK_SKEW = timedelta(seconds=5)


def made_for(account: CreatedAccount, signup: SignUp) -> bool:
    """Whether `account` may be adopted for this sign-up's intent: it carries the
    intent, and it was made after it (the provider's adapter hands over only accounts
    on our connection whose created_at it could read: issue 18)."""
    return account.intent_id == signup.id and account.created_at >= signup.requested_at - CLOCK_SKEW
