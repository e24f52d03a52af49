"""Enumeration-safe mode tells the real owner: with existing accounts hidden, a sign-up
with a registered address answers like a new one, and the address's owner is told by
e-mail (`user.signup_attempted`, sent by the welcome-e-mail worker).

At most one notice per address and `every` (an hour): the time of the last one is kept
in the database (`attempt_notices`, keyed by a SHA-256 of the case-folded address) and
claimed in the very transaction that writes the notice's outbox row, so the hour holds
across web processes and restarts, and a notice is written exactly when it is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from signup.domain.errors import ProviderUnavailable
from signup.domain.events import SignupAttempted, SignupAttemptedData
from signup.service_layer.ports import AccountDirectory
from signup.service_layer.unit_of_work import Transaction, UnitOfWork, Work

log = structlog.get_logger(__name__)

NOTICE_EVERY = timedelta(hours=1)


def address_key(email: str) -> str:
    return hashlib.sha256(email.casefold().encode("utf-8")).hexdigest()


async def attempt_notice(
    uow: UnitOfWork,
    email: str,
    *,
    directory: AccountDirectory | None,
    clock: Callable[[], datetime],
    new_id: Callable[[], str],
    source: str,
    every: timedelta = NOTICE_EVERY,
    language: str | None = None,
) -> Work[None] | None:
    """The work that writes the notice for the owner of `email` (to run in the same
    transaction as the attempt's own record), or None when one went out within `every`.

    The owner's account is read from our store when we keep accounts (`directory` None),
    or asked of the provider, only once the hour allows a notice.
    """
    key = address_key(email)

    async def recent(tx: Transaction) -> bool:
        return await tx.attempt_notices.sent_after(key, clock() - every)

    if await uow.read(recent, quick=True):
        return None
    owner: tuple[str, str] | None = None
    if directory is not None:
        try:
            accounts = await directory.find_by_email(email)
        except ProviderUnavailable as exc:
            # The answer must not tell this attempt apart: no notice this time.
            log.warning("signup.attempt_notice_skipped", reason=exc.reason)
            return None
        if not accounts:
            return None
        owner = (accounts[0].user_id, accounts[0].email)

    async def notify(tx: Transaction) -> None:
        account = owner
        if account is None:
            found = await tx.users.by_email(email)
            if found is None:
                return
            account = (found.user_id, found.email)
        now = clock()  # stamped in its transaction, as every event (decision 0013)
        if not await tx.attempt_notices.claim(key, now, now - every):
            return
        user_id, address = account
        await tx.outbox.add(
            SignupAttempted(
                id=new_id(),
                source=source,
                time=now,
                data=SignupAttemptedData(
                    user_id=user_id, email=address, attempted_at=now, language=language
                ),
            )
        )

    return notify
