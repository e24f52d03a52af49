"""Schemathesis hooks: how to make values of the formats `/openapi.json` names for rules no
JSON Schema keyword can state (`SCHEMATHESIS_HOOKS=signup.testing.schemathesis_formats`).

The lengths, types, options and patterns are in the schema itself; what is left is
content: a password that is not common, a name without a link, an address we can write
to. The API names these as formats (`password`, `person-name`, `email`), as OpenAPI
intends formats to be used, and this module tells the fuzzer which values are valid, by
the very rules the service applies (signup.domain), so "schema-valid" means "accepted".
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

import schemathesis
from hypothesis import strategies as st

from signup.domain.email_address import EmailRefused, normalise_email
from signup.domain.names import name_refusal
from signup.domain.passwords import MAX_LENGTH, MIN_LENGTH, password_refusal

MAX_NAME = 100


def _deliverable(address: str) -> bool:
    try:
        normalise_email(address)
    except EmailRefused:
        return False
    return True


def _a_name(value: str) -> bool:
    cleaned = unicodedata.normalize("NFC", value).strip()
    return not cleaned or name_refusal(cleaned) is None


schemathesis.openapi.format("email", st.emails().filter(_deliverable))
schemathesis.openapi.format(
    "password",
    st.text(min_size=MIN_LENGTH, max_size=MAX_LENGTH).filter(
        lambda p: password_refusal(p, None, "Naked Coders") is None
    ),
)
schemathesis.openapi.format("person-name", st.text(max_size=MAX_NAME).filter(_a_name))


@schemathesis.hook
def before_call(ctx: object, case: Any, **kwargs: object) -> None:
    """A fresh Idempotency-Key for every request that carries a valid one.

    The same key with a different body is refused (422, as the IETF draft on the header
    says): a fact about earlier requests, not about this one's shape, which the fuzzer
    cannot know. Keys over the limit are left as they are, to be refused.
    """
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and len(value) <= 255:
            headers[name] = f"{uuid.uuid4().hex}{value}"[:255]


@schemathesis.hook
def filter_body(ctx: object, body: Any) -> bool:
    """Leave out bodies whose password is their own e-mail address: a rule across two
    fields, which no schema states (the fuzzer reuses one string for several fields)."""
    if isinstance(body, dict):
        password, email = body.get("password"), body.get("email")
        if isinstance(password, str) and isinstance(email, str):
            refusal = password_refusal(password, email.strip().lower(), None)
            return refusal is None or refusal[0] != "password.is_email"
    return True
