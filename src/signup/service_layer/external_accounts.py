"""Accounts made outside the form (social logins, the dashboard, Auth0's API): each gets
exactly one `user.new`, whichever path saw it first (the form, Auth0's events, the sweep).

The dedupe key is the provider's user id in `announced_accounts`, written in the same
transaction as the outbox row by every path, and never pruned. An account that carries
the intent of one of our sign-ups (`CreatedAccount.intent_id`) is the form's: its event
is the form's, with the form's data. While that sign-up is still pending (the form's
request in flight, Auth0 already done), the account is kept as a *sighting* and not
announced here: the form's completion (or reconciliation) announces it, and should the
sign-up be abandoned after all, `settle_sightings` announces the account as it was seen,
so it is never lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from signup import metrics
from signup.domain.errors import AccountAlreadyAnnounced
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.ports import Sighting
from signup.service_layer.sign_up_identity import time_ordered_id
from signup.service_layer.unit_of_work import Transaction, UnitOfWork

log = structlog.get_logger(__name__)

# announced: its `user.new` is in the outbox now; repeat: it had one already; deferred:
# the form's sign-up of it is pending (kept as a sighting); form: the form's sign-up,
# given up for lost, was completed with it (the form's event).
Outcome = Literal["announced", "repeat", "deferred", "form"]


@dataclass
class ExternalAccounts:
    uow: UnitOfWork
    clock: Callable[[], datetime]
    source: str
    # `data.identity_provider` of the events (the service's provider: `auth0`).
    identity_provider: str = "auth0"
    # Completes a sign-up given up for lost with the account its request made
    # (`RegistrationService.complete`): the form's event, with the form's data.
    complete_signup: Callable[[SignUp, CreatedAccount], Awaitable[object]] | None = None
    new_id: Callable[[], str] = time_ordered_id

    async def announce(
        self, account: CreatedAccount, origin: str, auth0_event_id: str | None = None
    ) -> Outcome:
        """Give `account` its one `user.new` unless it has one; durable when it returns.

        Waits on nothing but the database (no provider call, no broker)."""
        outcome = await self._decide(account, origin, auth0_event_id, seen=None)
        # A sweep finds every account again and again: repeats are not news.
        say = log.debug if outcome == "repeat" else log.info
        say(
            "account.seen",
            user_id=account.user_id,
            origin=origin,
            outcome=outcome,
            auth0_event_id=auth0_event_id,
        )
        return outcome

    async def settle_sightings(self, limit: int = 500) -> dict[str, int]:
        """Announce the sightings whose form sign-up did not announce them (abandoned,
        refused, gone); forget those it did. Those still pending wait for the next round."""

        async def oldest(tx: Transaction) -> list[Sighting]:
            return await tx.sightings.oldest(limit)

        report: dict[str, int] = {"announced": 0, "repeat": 0, "deferred": 0, "form": 0}
        for sighting in await self.uow.read(oldest):
            outcome = await self._decide(
                sighting.account, sighting.origin, sighting.auth0_event_id, seen=sighting
            )
            report[outcome] += 1
        return report

    async def _decide(
        self,
        account: CreatedAccount,
        origin: str,
        auth0_event_id: str | None,
        seen: Sighting | None,
    ) -> Outcome:
        abandoned: SignUp | None = None

        async def work(tx: Transaction) -> Outcome:
            nonlocal abandoned
            abandoned = None
            if await tx.announced.event_for(account.user_id) is not None:
                if seen is not None:
                    await tx.sightings.remove(account.user_id)
                return "repeat"
            signup = await tx.signups.get(account.intent_id) if account.intent_id else None
            if signup is not None and signup.status in (
                SignUpStatus.PENDING,
                SignUpStatus.ABANDONED,
            ):
                # The form's account: kept (durably) until the form's event is written.
                if seen is None:
                    await tx.sightings.add(
                        Sighting(account, origin, auth0_event_id, seen_at=self.clock())
                    )
                if signup.status is SignUpStatus.ABANDONED and self.complete_signup:
                    abandoned = signup
                    return "form"
                return "deferred"
            if signup is not None and signup.status is SignUpStatus.CREATED:
                # Completed before announcements were recorded: that was its event.
                if seen is not None:
                    await tx.sightings.remove(account.user_id)
                return "repeat"
            event = self._event_for(account, origin, auth0_event_id)
            await tx.announced.add(account.user_id, event.id, origin, event.time)
            await tx.outbox.add(event)
            if seen is not None:
                await tx.sightings.remove(account.user_id)
            return "announced"

        try:
            outcome = await self.uow.run(work)
        except AccountAlreadyAnnounced:
            # Another process announced it in the same instant: a repeat, not an error.
            outcome = await self.uow.run(work)
        if outcome == "announced":
            metrics.ANNOUNCED.labels(origin).inc()
        if abandoned is not None and self.complete_signup is not None:
            await self.complete_signup(abandoned, account)

            async def forget(tx: Transaction) -> None:
                await tx.sightings.remove(account.user_id)

            await self.uow.run(forget)
        return outcome

    def _event_for(
        self, account: CreatedAccount, origin: str, auth0_event_id: str | None
    ) -> UserRegistered:
        return UserRegistered(
            id=self.new_id(),  # ours, one per account; Auth0's id rides along for tracing
            source=self.source,
            time=self.clock(),
            auth0eventid=auth0_event_id,
            data=UserRegisteredData(
                user_id=account.user_id,
                email=account.email,
                email_verified=account.email_verified,
                given_name=account.given_name,
                family_name=account.family_name,
                name=account.name
                or Applicant(account.email, account.given_name, account.family_name).name,
                created_at=account.created_at,
                identity_provider=self.identity_provider,
                connection=account.connection,
                is_social=account.is_social,
                origin=origin,
            ),
        )


__all__ = ["ExternalAccounts", "Outcome"]
