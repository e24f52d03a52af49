"""The request rules: e-mail normalisation, NIST password policy, names, unknown fields."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signup.domain.passwords import common_passwords, password_problem
from signup.entrypoints.web.schemas import (
    PasswordPolicy,
    SignUpRequest,
    normalise_email,
    validate_signup,
)

POLICY = PasswordPolicy("Naked Coders")
GOOD = "violet tractor anthem"


def fields(result: object) -> dict[str, str]:
    assert isinstance(result, list), result
    return {e["field"]: e["message"] for e in result}


def test_email_is_trimmed_and_its_domain_lower_cased() -> None:
    result = validate_signup({"email": "  Ada.L@Example.COM ", "password": GOOD}, POLICY)
    assert isinstance(result, SignUpRequest)
    assert result.email == "Ada.L@example.com"


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.com", "ada@@example.com", "a b@c.d"]
)
def test_malformed_emails_are_refused_on_the_email_field(email: str) -> None:
    assert "email" in fields(validate_signup({"email": email, "password": GOOD}, POLICY))


def test_a_domain_is_checked_once_and_answers_stay_the_same() -> None:
    checker = importlib.import_module("email_validator.validate_email")
    kept = checker.validate_email_domain_name.kept
    before = kept.cache_info()
    first = [normalise_email(f"ada{i}@Bücher.Example") for i in range(3)]
    after = kept.cache_info()
    assert first == [f"ada{i}@bücher.example" for i in range(3)]
    assert after.hits - before.hits >= 2  # the second and third address reused the first
    answer = checker.validate_email_domain_name("bücher.example")
    answer["domain"] = "tampered.example"  # a caller's copy: the kept answer is untouched
    assert normalise_email("eve@bücher.example") == "eve@bücher.example"


@pytest.mark.parametrize("email", ["ada@-bad.example", "ada@exa mple.com", "ada@localhost"])
def test_a_refused_domain_is_refused_every_time(email: str) -> None:
    for _ in range(3):
        with pytest.raises(ValueError, match="valid e-mail address"):
            normalise_email(email)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 8"),
        ("x" * 129, "at most 128"),
        ("aaaaaaaaaa", "repeat"),
        ("password123", "too common"),
        ("ada@example.com", "e-mail"),
        ("nakedcoders", "site"),
    ],
)
def test_password_policy(password: str, why: str) -> None:
    errors = fields(validate_signup({"email": "ada@example.com", "password": password}, POLICY))
    assert why in errors["password"]
    assert password not in errors["password"], "the password is never echoed"


def test_long_passphrases_and_unicode_are_welcome() -> None:
    for password in (GOOD, "Ünïcödé pässwörd ✓", "x" * 7 + "y" * 121):
        assert password_problem(password, "ada@example.com") is None


def test_the_common_list_ships_with_the_package() -> None:
    assert len(common_passwords()) > 10_000
    assert "password1" in common_passwords()


def test_unknown_fields_and_missing_fields_are_named() -> None:
    errors = fields(validate_signup({"email": "ada@example.com", "extra": 1}, POLICY))
    assert set(errors) == {"password", "extra"}


def test_names_are_trimmed_bounded_and_free_of_control_characters() -> None:
    ok = validate_signup(
        {"email": "a@b.co", "password": GOOD, "given_name": "  Ada ", "family_name": ""}, POLICY
    )
    assert isinstance(ok, SignUpRequest)
    assert (ok.given_name, ok.family_name) == ("Ada", None)
    assert "given_name" in fields(
        validate_signup({"email": "a@b.co", "password": GOOD, "given_name": "x" * 101}, POLICY)
    )
    assert "family_name" in fields(
        validate_signup({"email": "a@b.co", "password": GOOD, "family_name": "a\x00b"}, POLICY)
    )


@pytest.mark.parametrize("body", [[], "text", 3, None, {"email": 5, "password": []}])
def test_wrong_shapes_become_field_errors(body: object) -> None:
    assert isinstance(validate_signup(body, POLICY), list)


@given(
    st.dictionaries(
        st.sampled_from(["email", "password", "given_name", "family_name", "x"]),
        st.one_of(st.text(max_size=300), st.integers(), st.none(), st.booleans()),
    )
)
def test_any_input_gives_a_request_or_field_errors(body: dict[str, object]) -> None:
    result = validate_signup(body, POLICY)
    if isinstance(result, list):
        assert result and all(set(e) == {"field", "message"} for e in result)
        password = body.get("password")
        if isinstance(password, str) and len(password) >= 4:
            assert all(password not in e["message"] for e in result)
    else:
        assert isinstance(result, SignUpRequest)


@given(st.emails())
def test_valid_emails_are_accepted(email: str) -> None:
    result = validate_signup({"email": email, "password": GOOD}, POLICY)
    if isinstance(result, SignUpRequest):
        assert result.email.rpartition("@")[2] == result.email.rpartition("@")[2].lower()
