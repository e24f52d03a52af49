"""E-mail verification of local accounts: the welcome e-mail's link, and opening it.

The link carries a signed, expiring token (`signup.domain.verification`). Opening it
marks the account `email_verified` and writes one `user.verified` event to the outbox,
in one transaction: the guarded update (`UserRepository.mark_verified`) lets one request
per account win, and only the winner writes the event. A used (the account is verified
already), expired or forged token changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from signup.domain.events import UserVerified, UserVerifiedData
from signup.domain.verification import TokenProblem, VerificationClaim, make_token, read_token
from signup.service_layer.sign_up_identity import time_ordered_id
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

VERIFY_PATH = "/signup/verify"


class Verification(enum.StrEnum):
    VERIFIED = "verified"  # this request verified the account; `user.verified` is written
    ALREADY_VERIFIED = "already_verified"  # a used link: the account was verified before
    EXPIRED = "expired"  # a genuine link past its expiry, for an account not verified
    INVALID = "invalid"  # not a link we made (or for no account of ours)


@dataclass(frozen=True, slots=True)
class VerificationResult:
    outcome: Verification
    # The account's address, for a genuine link only (VERIFIED, ALREADY_VERIFIED, EXPIRED).
    email: str | None = None


@dataclass(frozen=True)
class VerificationLinks:
    """Makes the welcome e-mail's link: `{site_url}/signup/verify?token=…[&lang=…]`."""

    key: bytes
    site_url: str
    ttl: timedelta
    clock: Callable[[], datetime]

    def link_for(self, user_id: str, language: str | None = None) -> str:
        token = make_token(self.key, user_id, self.clock() + self.ttl)
        query = {"token": token, **({"lang": language} if language else {})}
        return f"{self.site_url.rstrip('/')}{VERIFY_PATH}?{urlencode(query)}"


@dataclass
class EmailVerification:
    """The use case behind `GET /signup/verify`."""

    uow: UnitOfWork
    key: bytes
    clock: Callable[[], datetime]
    source: str
    new_id: Callable[[], str] = time_ordered_id

    async def verify(self, token: str) -> VerificationResult:
        claim = read_token(self.key, token, self.clock())
        if claim is TokenProblem.MALFORMED:
            return VerificationResult(Verification.INVALID)
        if claim is TokenProblem.EXPIRED:
            return await self._expired(token)
        assert isinstance(claim, VerificationClaim)
        return await self.uow.run(lambda tx: self._verify(tx, claim.user_id))

    async def _verify(self, tx: Transaction, user_id: str) -> VerificationResult:
        account = await tx.users.by_id(user_id)
        if account is None:
            return VerificationResult(Verification.INVALID)
        if not await tx.users.mark_verified(user_id):
            return VerificationResult(Verification.ALREADY_VERIFIED, account.email)
        now = self.clock()  # in the transaction: the event's time is its commit's
        await tx.outbox.add(
            UserVerified(
                id=self.new_id(),
                source=self.source,
                time=now,
                data=UserVerifiedData(
                    user_id=account.user_id,
                    email=account.email,
                    verified_at=now,
                    identity_provider="local",
                ),
            )
        )
        return VerificationResult(Verification.VERIFIED, account.email)

    async def _expired(self, token: str) -> VerificationResult:
        """An expired link to an account verified meanwhile is a used one, not an expired one."""
        # The signature was good: the user id in it is ours (read without the expiry).
        claim = read_token(self.key, token, datetime.fromtimestamp(0, UTC))
        assert isinstance(claim, VerificationClaim)
        account = await self.uow.read(lambda tx: tx.users.by_id(claim.user_id))
        if account is None:
            return VerificationResult(Verification.INVALID)
        if account.email_verified:
            return VerificationResult(Verification.ALREADY_VERIFIED, account.email)
        return VerificationResult(Verification.EXPIRED, account.email)
