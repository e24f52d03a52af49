"""Every field error carries a stable `code` a headless site can translate by, and every
code the service can answer with is listed in docs/contract.md."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from signup.domain.errors import ChallengeRefused, FieldRejected
from signup.domain.model import Applicant, SignUp, SignUpStatus
from signup.entrypoints.web.problems import refusal_for
from signup.entrypoints.web.schemas import PasswordPolicy, validate_signup

POLICY = PasswordPolicy("Naked Coders")
GOOD = "violet tractor anthem"
CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"

# body -> the codes of its field errors, by field
CASES: list[tuple[object, dict[str, str]]] = [
    ({"email": "ada@example.com"}, {"password": "password.required"}),
    ({"password": GOOD}, {"email": "email.required"}),
    ({"email": "ada@example.com", "password": "short"}, {"password": "password.too_short"}),
    ({"email": "ada@example.com", "password": "x" * 129}, {"password": "password.too_long"}),
    (
        {"email": "ada@example.com", "password": "aaaaaaaaaa"},
        {"password": "password.repeated_character"},
    ),
    (
        {"email": "ada.lovelace@example.com", "password": "ada.lovelace"},
        {"password": "password.is_email"},
    ),
    (
        {"email": "ada@example.com", "password": "nakedcoders"},
        {"password": "password.is_site_name"},
    ),
    ({"email": "ada@example.com", "password": "password1"}, {"password": "password.too_common"}),
    ({"email": "not-an-address", "password": GOOD}, {"email": "email.invalid"}),
    ({"email": "   ", "password": GOOD}, {"email": "email.required"}),
    ({"email": "a" * 65 + "@example.com", "password": GOOD}, {"email": "email.too_long"}),
    ({"email": "a" * 2000, "password": GOOD}, {"email": "email.too_long"}),
    ({"email": "josé@example.com", "password": GOOD}, {"email": "email.non_ascii_local_part"}),
    ({"email": "ada@exаmple.com", "password": GOOD}, {"email": "email.mixed_scripts"}),
    ({"email": "ada@ѕсоор.com", "password": GOOD}, {"email": "email.look_alike"}),
    ({"email": 5, "password": GOOD}, {"email": "email.not_text"}),
    (
        {"email": "a@b.co", "password": GOOD, "given_name": "x" * 101},
        {"given_name": "given_name.too_long"},
    ),
    (
        {"email": "a@b.co", "password": GOOD, "family_name": "x" * 401},
        {"family_name": "family_name.too_long"},
    ),
    (
        {"email": "a@b.co", "password": GOOD, "given_name": "a\x00b"},
        {"given_name": "given_name.invisible_characters"},
    ),
    (
        {"email": "a@b.co", "password": GOOD, "family_name": "=?utf-8?q?x?="},
        {"family_name": "family_name.encoded_text"},
    ),
    (
        {"email": "a@b.co", "password": GOOD, "given_name": "Ada <a@b.co>"},
        {"given_name": "given_name.address"},
    ),
    (
        {"email": "a@b.co", "password": GOOD, "given_name": "see evil.example"},
        {"given_name": "given_name.link"},
    ),
    ({"email": "a@b.co", "password": GOOD, "nickname": "ada"}, {"nickname": "field.unknown"}),
    ({"email": "a@b.co", "password": GOOD, "challenge": 5}, {"challenge": "challenge.not_text"}),
    (
        {"email": "a@b.co", "password": GOOD, "challenge": "x" * 4097},
        {"challenge": "challenge.too_long"},
    ),
    ([], {"body": "body.malformed"}),
    ("text", {"body": "body.malformed"}),
]


@pytest.mark.parametrize(("body", "codes"), CASES)
def test_each_field_error_has_its_code(body: object, codes: dict[str, str]) -> None:
    result = validate_signup(body, POLICY)
    assert isinstance(result, list)
    assert {e["field"]: e["code"] for e in result} == codes


def test_a_refusal_of_the_domain_carries_its_code_into_the_answer() -> None:
    error = FieldRejected("email", "This domain is not accepted here.", code="email.domain_refused")
    refusal = refusal_for(error)
    assert refusal is not None
    assert b'"code":"email.domain_refused"' in refusal.answer(error).body


def test_a_refusal_without_a_code_gets_the_field_s_own() -> None:
    assert FieldRejected("password", "too weak").code == "password.refused"


def test_a_replayed_refusal_keeps_its_code() -> None:
    signup = SignUp(
        "s-1", Applicant("a@b.co", None, None), SignUpStatus.PENDING, "local", datetime.now(UTC)
    )
    body = signup.rejected("password", "weak", "password.too_weak").response_body
    assert body == {"field": "password", "message": "weak", "code": "password.too_weak"}


def _listed_codes() -> set[str]:
    return set(re.findall(r"^\| `(<?[a-z_]+>?\.[a-z_]+)`", CONTRACT.read_text("utf-8"), re.M))


def test_every_code_is_listed_in_the_contract() -> None:
    listed = _listed_codes()
    answered = {code for _, codes in CASES for code in codes.values()}
    answered |= {
        "email.registered",
        "idempotency_key.too_long",
        "idempotency_key.reused",
        "password.too_weak",
        "password.contains_user_info",
        "password.used_before",
        "username.taken",
        "body.refused_by_provider",
        *(ChallengeRefused(reason).code for reason in ChallengeRefused.MESSAGES),
    }
    generic = {re.sub(r"^(given_name|family_name)\.", "<name>.", code) for code in answered}
    assert generic <= listed, sorted(generic - listed)
