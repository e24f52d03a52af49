"""RFC 9457 problem details: every error answer of the API has this shape, and the one
table that says which problem answers which refusal of the service layer."""

from __future__ import annotations

import gettext
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from starlette.responses import Response

from signup.domain.errors import (
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
from signup.entrypoints.web.error_text import localise_errors

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad request",
    403: "Cross-site request refused",
    404: "Not found",
    405: "Method not allowed",
    409: "E-mail already registered",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Internal error",
    503: "Service temporarily unavailable",
}


# A body of a thousand unknown keys earned a thousand field errors (79 KB): the answer is
# bounded, whatever the input; the first few say what to fix.
MAX_ERRORS = 20


def problem_type(slug: str) -> str:
    return f"urn:signup:problem:{slug}"


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
    translations: gettext.NullTranslations | None = None,
) -> Response:
    """`extensions`: members of the problem's own (RFC 9457 section 3.2), e.g. the 409's
    `sign_in_url`. `translations`: the request's language, for `detail` and the field
    errors' messages (by their codes, `error_text`)."""
    if translations is not None:
        detail = translations.gettext(detail)
        if errors:
            errors = localise_errors(errors, translations)
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors:
        if len(errors) > MAX_ERRORS:
            omitted = len(errors) - MAX_ERRORS
            body["detail"] = f"{detail} ({omitted} more not listed.)"
            errors = errors[:MAX_ERRORS]
        body["errors"] = errors
    body.update(extensions or {})
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=all_headers
    )


E = TypeVar("E", bound=SignUpError)


@dataclass(frozen=True, slots=True)
class Refusal(Generic[E]):
    """How the API answers one kind of refusal from the service layer."""

    outcome: str  # its label on signup_signups_total
    status: int
    slug: str
    detail: str
    title: str | None = None  # None: the status's own (TITLES)
    errors: Callable[[E], list[dict[str, str]]] | None = None
    retry_after: Callable[[E], float] | None = None
    # Worth a warning in the log: the event's name, and the reason it is logged with.
    warning: tuple[str, Callable[[E], str]] | None = None
    # Its labels on signup_refusals_total (stable codes); None: the problem's slug.
    reasons: Callable[[E], list[str]] | None = None

    def reasons_of(self, exc: E) -> list[str]:
        return self.reasons(exc) if self.reasons else [self.slug]

    def answer(
        self,
        exc: E,
        extensions: dict[str, Any] | None = None,
        translations: gettext.NullTranslations | None = None,
    ) -> Response:
        return problem(
            self.status,
            self.slug,
            self.detail,
            title=self.title,
            errors=self.errors(exc) if self.errors else None,
            retry_after=self.retry_after(exc) if self.retry_after else None,
            extensions=extensions,
            translations=translations,
        )


def _refusal(kind: type[E], refusal: Refusal[E]) -> tuple[type[SignUpError], Refusal[Any]]:
    # Ties each entry's callables to its own error type, so that mypy checks them.
    return kind, refusal


REFUSALS: dict[type[SignUpError], Refusal[Any]] = dict(
    [
        _refusal(
            EmailAlreadyRegistered,
            Refusal(
                "existing",
                409,
                "email-already-registered",
                "An account with this e-mail address already exists. "
                "Sign in instead, or reset your password.",
                errors=lambda _: [
                    {
                        "field": "email",
                        "message": "This e-mail address is already registered.",
                        "code": "email.registered",
                    }
                ],
            ),
        ),
        _refusal(
            FieldRejected,
            Refusal(
                "rejected",
                422,
                "invalid-input",
                "The identity provider refused a field.",
                errors=lambda exc: [{"field": exc.field, "message": exc.message, "code": exc.code}],
                reasons=lambda exc: [exc.code],
            ),
        ),
        _refusal(
            FieldsRefused,
            Refusal(
                "refused",
                422,
                "invalid-input",
                "Some fields need attention.",
                errors=lambda exc: [
                    {"field": r.field, "message": r.message, "code": r.code} for r in exc.rejections
                ],
                reasons=lambda exc: [r.code for r in exc.rejections],
            ),
        ),
        _refusal(
            PasswordCheckUnavailable,
            Refusal(
                "check_unavailable",
                503,
                "password-check-unavailable",
                "We could not check your password just now. Please try again in a moment.",
                retry_after=lambda exc: exc.retry_after,
                reasons=lambda _: ["password.check_unavailable"],
            ),
        ),
        _refusal(
            ChallengeRefused,
            Refusal(
                "challenge_refused",
                422,
                "invalid-input",
                "Some fields need attention.",
                errors=lambda exc: [{"field": exc.field, "message": exc.message, "code": exc.code}],
                reasons=lambda exc: [exc.code],
            ),
        ),
        _refusal(
            IdempotencyKeyReused,
            Refusal(
                "invalid",
                422,
                "idempotency-key-reused",
                "This Idempotency-Key was used with a different request.",
                errors=lambda _: [
                    {
                        "field": "Idempotency-Key",
                        "message": "Use a new key for a different request.",
                        "code": "idempotency_key.reused",
                    }
                ],
            ),
        ),
        _refusal(
            RequestInProgress,
            Refusal(
                "in_progress",
                409,
                "request-in-progress",
                "A request with this Idempotency-Key is still being processed; try again shortly.",
                title="Request in progress",
                retry_after=lambda _: 2,
            ),
        ),
        # OutcomeUnknown is a ProviderUnavailable: the most specific entry answers.
        _refusal(
            OutcomeUnknown,
            Refusal(
                "unknown",
                503,
                "provider-unavailable",
                "We could not confirm your sign-up just now. Please try again in a moment.",
                retry_after=lambda exc: exc.retry_after,
                warning=("signup.outcome_unknown", lambda exc: exc.reason),
            ),
        ),
        _refusal(
            ProviderUnavailable,
            Refusal(
                "unavailable",
                503,
                "provider-unavailable",
                "Sign-up is briefly unavailable. Please try again in a moment.",
                retry_after=lambda exc: exc.retry_after,
                warning=("signup.provider_unavailable", lambda exc: exc.reason),
            ),
        ),
    ]
)


def refusal_for(exc: SignUpError) -> Refusal[Any] | None:
    """The answer to `exc`: its own type's entry, else its nearest base's; None if none."""
    for kind in type(exc).__mro__:
        refusal = REFUSALS.get(kind)
        if refusal is not None:
            return refusal
    return None
