"""What can go wrong in a sign-up, as the domain sees it (no HTTP here)."""

from __future__ import annotations

from typing import ClassVar


class SignUpError(Exception):
    """Base of every expected sign-up failure."""


class EmailAlreadyRegistered(SignUpError):
    pass


class FieldRejected(SignUpError):
    """A field's value was refused (e.g. by the provider's own password policy).

    `code` is the stable name of the problem (`password.too_weak`, `email.domain_refused`):
    a headless site translates by it, so it never changes once published (docs/contract.md
    lists them). Without one, `<field>.refused`.
    """

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code or f"{field}.refused"


class FieldsRefused(SignUpError):
    """Fields refused before any account was asked for (the abuse controls), all at once
    so that one round trip fixes them."""

    def __init__(self, rejections: tuple[FieldRejected, ...]) -> None:
        super().__init__(", ".join(r.code for r in rejections))
        self.rejections = rejections


class PasswordCheckUnavailable(SignUpError):
    """The breached-password look-up failed and the site refuses rather than skip it."""

    def __init__(self, reason: str, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ProviderUnavailable(SignUpError):
    """The provider could not be asked; nothing was created. Try again later."""

    def __init__(self, reason: str, retry_after: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OutcomeUnknown(ProviderUnavailable):
    """The request reached the provider but its answer was lost (e.g. a read timeout).

    The account may or may not exist; the sign-up stays pending for reconciliation.
    """


class IdempotencyKeyReused(SignUpError):
    """The same Idempotency-Key came with a different request body."""


class AccountAlreadyCompleted(SignUpError):
    """Another sign-up completed with this account first (its event is the account's one)."""


class AccountAlreadyAnnounced(SignUpError):
    """Another transaction announced this account first (`announced_accounts`): its
    `user.new` is the account's one. Not a failure: the caller takes it as a repeat."""

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.user_id = user_id


class RequestInProgress(SignUpError):
    """A request with this Idempotency-Key is still being processed."""


class StatusChangeRefused(Exception):
    """A sign-up was asked to move where its rules forbid (e.g. `created` -> `rejected`).

    A bug in the caller, not a refusal of the request: deliberately not a `SignUpError`,
    so the API answers it as an internal error rather than as one of the expected problems.
    """

    def __init__(self, signup_id: str, current: str, wanted: str) -> None:
        super().__init__(f"sign-up {signup_id}: {current} cannot become {wanted}")
        self.signup_id = signup_id
        self.current = current
        self.wanted = wanted


class ChallengeRefused(SignUpError):
    """The proof-of-work solution is missing, not ours, expired or already used.

    `reason` is one of `missing`, `invalid`, `expired`, `used`; the field at fault is
    `challenge` and the stable code `challenge.<reason>`.
    """

    field = "challenge"
    MESSAGES: ClassVar[dict[str, str]] = {
        "missing": "Let the page check your browser first, then send the form again.",
        "invalid": "The browser check did not pass: reload the page and try again.",
        "expired": "The browser check expired: send the form again to repeat it.",
        "used": "The browser check was already used: send the form again to repeat it.",
    }

    def __init__(self, reason: str) -> None:
        if reason not in self.MESSAGES:
            raise ValueError(f"unknown challenge refusal {reason!r}")
        super().__init__(f"challenge {reason}")
        self.reason = reason
        self.code = f"challenge.{reason}"
        self.message = self.MESSAGES[reason]
