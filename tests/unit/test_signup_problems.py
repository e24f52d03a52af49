"""The refusals table: each service-layer error gets the very answer the API gave before the
table (the bodies below are the bytes the eight except blocks of the route wrote), each
field error with its stable `code` beside it (issue 21)."""

from __future__ import annotations

import pytest

from signup.domain.errors import (
    AccountAlreadyCompleted,
    ChallengeRefused,
    EmailAlreadyRegistered,
    FieldRejected,
    FieldsRefused,
    IdempotencyKeyReused,
    OutcomeUnknown,
    PasswordCheckUnavailable,
    ProviderUnavailable,
    RequestInProgress,
    SignUpError,
)
from signup.entrypoints.web.problems import REFUSALS, refusal_for

# error, outcome label, status, exact body, Retry-After, warning (event, reason)
CASES: list[tuple[SignUpError, str, int, bytes, str | None, tuple[str, str] | None]] = [
    (
        EmailAlreadyRegistered("ada@example.com"),
        "existing",
        409,
        b'{"type":"urn:signup:problem:email-already-registered",'
        b'"title":"E-mail already registered","status":409,'
        b'"detail":"An account with this e-mail address already exists. '
        b'Sign in instead, or reset your password.",'
        b'"errors":[{"field":"email","message":"This e-mail address is already registered.",'
        b'"code":"email.registered"}]}',
        None,
        None,
    ),
    (
        FieldRejected(
            "password", "PasswordStrengthError: Password is too weak", code="password.too_weak"
        ),
        "rejected",
        422,
        b'{"type":"urn:signup:problem:invalid-input","title":"Invalid input","status":422,'
        b'"detail":"The identity provider refused a field.",'
        b'"errors":[{"field":"password",'
        b'"message":"PasswordStrengthError: Password is too weak",'
        b'"code":"password.too_weak"}]}',
        None,
        None,
    ),
    (
        ChallengeRefused("used"),
        "challenge_refused",
        422,
        b'{"type":"urn:signup:problem:invalid-input","title":"Invalid input","status":422,'
        b'"detail":"Some fields need attention.",'
        b'"errors":[{"field":"challenge","message":"The browser check was already used: '
        b'send the form again to repeat it.","code":"challenge.used"}]}',
        None,
        None,
    ),
    (
        IdempotencyKeyReused("k-1"),
        "invalid",
        422,
        b'{"type":"urn:signup:problem:idempotency-key-reused","title":"Invalid input",'
        b'"status":422,"detail":"This Idempotency-Key was used with a different request.",'
        b'"errors":[{"field":"Idempotency-Key",'
        b'"message":"Use a new key for a different request.","code":"idempotency_key.reused"}]}',
        None,
        None,
    ),
    (
        RequestInProgress("12.5"),
        "in_progress",
        409,
        b'{"type":"urn:signup:problem:request-in-progress","title":"Request in progress",'
        b'"status":409,"detail":"A request with this Idempotency-Key is still being '
        b'processed; try again shortly."}',
        "2",
        None,
    ),
    (
        OutcomeUnknown("read timeout", retry_after=3.2),
        "unknown",
        503,
        b'{"type":"urn:signup:problem:provider-unavailable",'
        b'"title":"Service temporarily unavailable","status":503,'
        b'"detail":"We could not confirm your sign-up just now. '
        b'Please try again in a moment."}',
        "4",
        ("signup.outcome_unknown", "read timeout"),
    ),
    (
        FieldsRefused(
            (
                FieldRejected("email", "Use an address you keep.", code="email.domain_refused"),
                FieldRejected("password", "Seen in a breach.", code="password.breached"),
            )
        ),
        "refused",
        422,
        b'{"type":"urn:signup:problem:invalid-input","title":"Invalid input","status":422,'
        b'"detail":"Some fields need attention.",'
        b'"errors":[{"field":"email","message":"Use an address you keep.",'
        b'"code":"email.domain_refused"},'
        b'{"field":"password","message":"Seen in a breach.","code":"password.breached"}]}',
        None,
        None,
    ),
    (
        PasswordCheckUnavailable("the range API answered 503", retry_after=5),
        "check_unavailable",
        503,
        b'{"type":"urn:signup:problem:password-check-unavailable",'
        b'"title":"Service temporarily unavailable","status":503,'
        b'"detail":"We could not check your password just now. '
        b'Please try again in a moment."}',
        "5",
        None,
    ),
    (
        ProviderUnavailable("queue deadline"),
        "unavailable",
        503,
        b'{"type":"urn:signup:problem:provider-unavailable",'
        b'"title":"Service temporarily unavailable","status":503,'
        b'"detail":"Sign-up is briefly unavailable. Please try again in a moment."}',
        "5",
        ("signup.provider_unavailable", "queue deadline"),
    ),
]


@pytest.mark.parametrize(
    ("error", "outcome", "status", "body", "retry_after", "warning"),
    CASES,
    ids=[type(case[0]).__name__ for case in CASES],
)
def test_each_refusal_answers_as_the_route_always_did(
    error: SignUpError,
    outcome: str,
    status: int,
    body: bytes,
    retry_after: str | None,
    warning: tuple[str, str] | None,
) -> None:
    refusal = refusal_for(error)
    assert refusal is not None
    answer = refusal.answer(error)
    assert refusal.outcome == outcome
    assert answer.status_code == status
    assert answer.body == body
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers.get("retry-after") == retry_after
    logged = None if refusal.warning is None else (refusal.warning[0], refusal.warning[1](error))
    assert logged == warning


def test_the_table_covers_every_case_above_and_nothing_else() -> None:
    assert set(REFUSALS) == {type(case[0]) for case in CASES}


def test_an_error_the_api_does_not_answer_is_left_to_propagate() -> None:
    # AccountAlreadyCompleted is settled inside the service layer; reaching the route
    # would be a bug, answered by the app's internal-error problem, not a refusal.
    assert refusal_for(AccountAlreadyCompleted("auth0|1")) is None
    assert refusal_for(SignUpError("base")) is None


def test_a_subclass_of_a_listed_error_gets_its_nearest_entry() -> None:
    class SlowDown(ProviderUnavailable):
        pass

    refusal = refusal_for(SlowDown("paced"))
    assert refusal is not None and refusal.outcome == "unavailable"


def test_each_refusal_is_counted_by_its_stable_codes() -> None:
    both = FieldsRefused(
        (
            FieldRejected("email", "m", code="email.domain_refused"),
            FieldRejected("password", "m", code="password.breached"),
        )
    )
    assert REFUSALS[FieldsRefused].reasons_of(both) == ["email.domain_refused", "password.breached"]
    unavailable = PasswordCheckUnavailable("down")
    assert REFUSALS[PasswordCheckUnavailable].reasons_of(unavailable) == [
        "password.check_unavailable"
    ]
    assert REFUSALS[EmailAlreadyRegistered].reasons_of(EmailAlreadyRegistered("a@b.c")) == [
        "email-already-registered"
    ]
