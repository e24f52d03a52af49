"""The sign-up use case: intent, provider call, outcome and its event, exactly once."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

import structlog

from signup import metrics
from signup.domain.commands import RegisterUser
from signup.domain.errors import (
    AccountAlreadyAnnounced,
    AccountAlreadyCompleted,
    EmailAlreadyRegistered,
    FieldRejected,
    OutcomeUnknown,
    ProviderUnavailable,
)
from signup.domain.events import ORIGIN_FORM, UserRegistered
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.existing_account import decoy_answer, keep_existing
from signup.service_layer.form_event import form_event
from signup.service_layer.owner_notice import NOTICE_EVERY, attempt_notice
from signup.service_layer.ports import AccountDirectory, IdentityProvider, Liveness
from signup.service_layer.sign_up_identity import (
    Registered,
    fingerprint,
    made_for,
    time_ordered_id,
)
from signup.service_layer.signup_replay import replay
from signup.service_layer.unit_of_work import Transaction, UnitOfWork, Work

log = structlog.get_logger(__name__)


@dataclass
class RegistrationService:
    uow: UnitOfWork
    provider: IdentityProvider
    clock: Callable[[], datetime]
    source: str
    hide_existing: bool = False
    # A pending sign-up younger than this is taken to be still in flight (without
    # `liveness` only, and for a sign-up of the same address on a 409).
    in_flight_for: timedelta = timedelta(seconds=30)
    new_id: Callable[[], str] = time_ordered_id
    # Which instances still run: a retry of a pending sign-up that no live request works
    # on settles it at once instead of answering 409 until reconciliation.
    liveness: Liveness | None = None
    # Hidden accounts: the owner of an address someone tried is told at most this often.
    notice_every: timedelta = NOTICE_EVERY
    # Keys the honeypot's decoy ids (`decoy`): a secret, so an id cannot be told for a
    # decoy by recomputing it; bootstrap derives one from a configured secret so that
    # every process answers a repeated request alike.
    decoy_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    # Where accounts are found by e-mail: the provider when it keeps them, else None and
    # our own store (`accounts_for`).
    _directory: AccountDirectory | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.provider.transactional:
            return
        if not isinstance(self.provider, AccountDirectory):
            raise TypeError(
                f"{self.provider.name} keeps its own accounts: it must find them by e-mail"
            )
        self._directory = self.provider

    # ---- the use case -------------------------------------------------------------

    async def register(self, cmd: RegisterUser) -> Registered:
        applicant = cmd.applicant
        print_ = fingerprint(applicant)
        same_request: tuple[str, ...] = ()
        if cmd.idempotency_key:
            key = cmd.idempotency_key

            async def by_key(tx: Transaction) -> SignUp | None:
                return await tx.signups.by_idempotency_key(key)

            earlier = await self.uow.read(by_key, quick=True)
            if earlier is not None:
                replayed = await replay(
                    self.uow,
                    earlier,
                    print_,
                    settle=self.reconcile_one,
                    clock=self.clock,
                    in_flight_for=self.in_flight_for,
                    liveness=self.liveness,
                )
                if replayed is not None:
                    return replayed
                # Reconciliation found nothing its earlier attempt made; should that
                # account turn up after all, it is this request's own.
                same_request = (earlier.id,)
        if self.provider.transactional:
            return await self._register_in_our_store(cmd, print_)
        return await self._register_remotely(cmd, print_, same_request)

    def decoy(self, email: str, idempotency_key: str | None = None) -> Registered:
        """A success's answer with a user id of the provider's form that names nobody:
        for an answer that must look like a sign-up where none was made.

        With an Idempotency-Key the id is the same for the same key and address, as a
        real sign-up's replay answers the same id, and nothing is written for it.
        """
        return decoy_answer(self.provider.name, self.decoy_key, email, idempotency_key)

    async def reconcile(self, older_than: timedelta, limit: int = 500) -> dict[str, int]:
        """Settle sign-ups whose provider outcome was never learnt (crash, timeout)."""
        cutoff = self.clock() - older_than

        async def stale(tx: Transaction) -> list[SignUp]:
            return await tx.signups.pending_before(cutoff, limit)

        report = {"completed": 0, "abandoned": 0, "failed": 0}
        for signup in await self.uow.read(stale):
            try:
                report[await self.reconcile_one(signup)] += 1
            except ProviderUnavailable as exc:
                log.warning(
                    "reconcile.provider_unavailable", signup_id=signup.id, reason=exc.reason
                )
                report["failed"] += 1
        return report

    async def reconcile_one(self, signup: SignUp) -> Literal["completed", "abandoned"]:
        account = await self._account_made_by(signup)
        if account is not None:
            await self._complete(signup, account)
            log.info("reconcile.completed", signup_id=signup.id, user_id=account.user_id)
            return "completed"
        await self._settle(signup.abandoned())
        log.info("reconcile.abandoned", signup_id=signup.id)
        return "abandoned"

    # ---- the two ways an account is made --------------------------------------------

    async def _register_in_our_store(self, cmd: RegisterUser, print_: str) -> Registered:
        applicant = cmd.applicant
        if not self.hide_existing:
            # Saves an Argon2 hash on a duplicate; with hidden accounts the hash is still
            # computed so that both answers take as long.
            async def taken(tx: Transaction) -> bool:
                return await tx.users.exists(applicant.email)

            if await self.uow.read(taken, quick=True):
                await self._record_existing(cmd, print_)
                raise EmailAlreadyRegistered(applicant.email)
        account = await self.provider.create_user(applicant, cmd.password)
        signup = self._new_signup(cmd, print_)
        answer = Registered(account.user_id, applicant.email)

        async def store(tx: Transaction) -> None:
            event = self._event_for(account, applicant)  # stamped in its transaction
            await tx.users.add(account)
            await tx.signups.add(signup.completed(answer.user_id, event.id, answer.body()))
            await tx.consents.add(account.user_id, applicant.consents)
            await tx.announced.add(account.user_id, event.id, ORIGIN_FORM, event.time)
            await tx.outbox.add(event)

        try:
            await self.uow.run(store)
        except EmailAlreadyRegistered:
            return await self._existing(cmd, print_)
        metrics.ANNOUNCED.labels(ORIGIN_FORM).inc()
        return answer

    async def _register_remotely(
        self, cmd: RegisterUser, print_: str, same_request: tuple[str, ...] = ()
    ) -> Registered:
        signup = self._new_signup(cmd, print_)
        worker = await self.liveness.hold() if self.liveness else None

        async def intend(tx: Transaction) -> None:
            await tx.signups.add(signup, worked_by=worker)

        await self.uow.run(intend)
        if worker is None:
            return await self._create_remotely(signup, cmd, print_, same_request)
        try:
            return await self._create_remotely(signup, cmd, print_, same_request)
        except BaseException as exc:
            # Left pending (the answer lost, a failure, the request cancelled): no request
            # works on it any longer, so a retry may settle it at once, and may come soon.
            await self._release(signup, worker)
            if isinstance(exc, OutcomeUnknown):
                exc.retry_after = min(exc.retry_after, 1.0)
            raise

    async def _create_remotely(
        self, signup: SignUp, cmd: RegisterUser, print_: str, same_request: tuple[str, ...]
    ) -> Registered:
        marked = replace(cmd.applicant, intent_id=signup.id)  # the account says who made it
        try:
            account = await self.provider.create_user(marked, cmd.password)
        except EmailAlreadyRegistered:
            return await self._on_provider_conflict(signup, cmd, print_, same_request)
        except FieldRejected as exc:
            await self._settle(signup.rejected(exc.field, exc.message, exc.code))
            raise
        except OutcomeUnknown:
            raise  # stays pending: reconciliation (or a retry) learns what happened
        except ProviderUnavailable:
            # Nothing was created: release the key so that a retry starts afresh.
            await self._settle(signup.abandoned())
            raise
        return await self._complete(signup, account)

    # ---- outcomes -----------------------------------------------------------------

    async def complete(self, signup: SignUp, account: CreatedAccount) -> Registered:
        """Complete `signup` with the account its request made (found by Auth0's event or
        the sweep after the sign-up was given up for lost): the form's event, its data."""
        return await self._complete(signup, account)

    async def _complete(self, signup: SignUp, account: CreatedAccount) -> Registered:
        """Mark the sign-up created and queue its one event, unless someone already did.

        The answer echoes the address as we normalised it, never as the provider did:
        the hidden answer for a registered address echoes the same form.
        """
        answer = Registered(account.user_id, signup.applicant.email)
        wrote = False

        async def complete(tx: Transaction) -> SignUp | None:
            nonlocal wrote
            wrote = False  # a work may run twice: only its last run counts
            # The event is made as its transaction runs: its time is that of the commit
            # the 201 follows, not of the moment the work was handed to the writer.
            event = self._event_for(account, signup.applicant)
            # Announced already (by Auth0's event or the sweep, should either have
            # got there first): the sign-up completes with that event, and adds none.
            prior = await tx.announced.event_for(account.user_id)
            created = signup.completed(answer.user_id, prior or event.id, answer.body())
            # One account, one event: when another sign-up of this person already
            # completed with this account (a retry without the Idempotency-Key, a second
            # tab, reconciliation of an earlier attempt), this one takes its answer and
            # queues nothing.
            owner = await tx.signups.created_for(
                account.user_id, signup.applicant.email, account.email
            )
            if owner is not None and owner.id != signup.id:
                duplicate = signup.existing(201, answer.body(), user_id=answer.user_id)
                for expected in (SignUpStatus.PENDING, SignUpStatus.ABANDONED):
                    if await tx.signups.settle(duplicate, expected=expected):
                        return owner
                return await tx.signups.get(signup.id)
            # A sign-up given up for lost whose account turns out to exist is completed
            # all the same: an account must never be left without its event.
            for expected in (SignUpStatus.PENDING, SignUpStatus.ABANDONED):
                if await tx.signups.settle(created, expected=expected):
                    await tx.consents.add(account.user_id, signup.applicant.consents)
                    if prior is None:
                        # The dedupe key, in the outbox row's own transaction.
                        await tx.announced.add(account.user_id, event.id, ORIGIN_FORM, event.time)
                        await tx.outbox.add(event)
                        wrote = True
                    return None
            return await tx.signups.get(signup.id)

        try:
            winner = await self.uow.run(complete)
        except (AccountAlreadyCompleted, AccountAlreadyAnnounced):
            # Another process completed (or announced) this account in the same instant;
            # its row is now visible, so this one settles as a duplicate of it.
            winner = await self.uow.run(complete)
        if wrote:
            metrics.ANNOUNCED.labels(ORIGIN_FORM).inc()
        if winner is not None and winner.response_body and winner.user_id:
            return Registered(winner.user_id, winner.applicant.email, replayed=True)
        return answer

    async def _on_provider_conflict(
        self, signup: SignUp, cmd: RegisterUser, print_: str, same_request: tuple[str, ...]
    ) -> Registered:
        """A 409: the address has an account. Is it the one this request asked for?

        Only when the account carries the intent of this sign-up or of an earlier attempt
        of the same request (same Idempotency-Key and body): only then does it hold this
        request's password. The address alone proves nothing: a stranger's request a
        millisecond earlier made an account with the stranger's password, and answering
        201 would tell this person that account is theirs. Every other request for a
        registered address is a 409 (or, with hidden accounts, the 201 that makes nothing).

        An earlier attempt no longer in flight (its answer lost, or reconciliation gave
        up before Auth0 made the account) whose account turns up here gets its one event
        all the same; an attempt still in flight completes itself.
        """
        email = signup.applicant.email
        ours = {signup.id, *same_request}
        now = self.clock()

        async def earlier_attempts(tx: Transaction) -> list[SignUp]:
            return await tx.signups.unsettled_for_email(email)

        attempts = {
            s.id: s
            for s in await self.uow.read(earlier_attempts, quick=True)
            if s.id in ours
            or s.status is SignUpStatus.ABANDONED
            or now - s.requested_at >= self.in_flight_for
        }
        if attempts.keys() - {signup.id}:  # else no account of ours can be there
            for account in await self.accounts_for(email):
                attempt = attempts.get(account.intent_id or "")
                if attempt is None or not made_for(account, attempt):
                    continue
                answer = await self._complete(attempt, account)
                if attempt.id == signup.id:
                    return answer
                if attempt.id in ours:
                    await self._settle(signup.existing(201, answer.body(), user_id=answer.user_id))
                    return answer
        return await self._existing(cmd, print_, signup)

    async def _existing(
        self, cmd: RegisterUser, print_: str, signup: SignUp | None = None
    ) -> Registered:
        answer = await self._record_existing(cmd, print_, signup)
        if answer is not None:
            return answer
        raise EmailAlreadyRegistered(cmd.applicant.email)

    async def _record_existing(
        self, cmd: RegisterUser, print_: str, signup: SignUp | None = None
    ) -> Registered | None:
        """Remember the answer (for Idempotency-Key replays); hidden mode answers 201."""
        hidden = self.decoy(cmd.applicant.email) if self.hide_existing else None
        settled = (signup or self._new_signup(cmd, print_)).existing(
            201 if hidden else 409, hidden.body() if hidden else {}
        )
        # Hidden: the owner is told (at most once an hour), in the same transaction.
        notify = await self._attempt_notice(cmd.applicant) if hidden else None
        await keep_existing(
            self.uow, settled, new=signup is None, keep=bool(cmd.idempotency_key), notify=notify
        )
        return hidden

    async def _attempt_notice(self, applicant: Applicant) -> Work[None] | None:
        return await attempt_notice(
            self.uow,
            applicant.email,
            directory=self._directory,
            clock=self.clock,
            new_id=self.new_id,
            source=self.source,
            every=self.notice_every,
            language=applicant.language,
        )

    # ---- helpers ------------------------------------------------------------------

    async def _account_made_by(self, signup: SignUp) -> CreatedAccount | None:
        """The account this sign-up's own request made: the one that carries its intent.

        One made after the intent by anyone else (a second tab, a stranger) is not it;
        that account's own sign-up accounts for it.
        """
        for account in await self.accounts_for(signup.applicant.email):
            if made_for(account, signup):
                return account
        return None

    async def accounts_for(self, email: str) -> list[CreatedAccount]:
        """The accounts of this address: asked of a provider that keeps them (Auth0); read
        from our own store, in a transaction of our own, when we keep them (the local
        provider), never through the provider, which holds no database of its own."""
        if self._directory is not None:
            return await self._directory.find_by_email(email)

        async def stored(tx: Transaction) -> CreatedAccount | None:
            return await tx.users.by_email(email)

        account = await self.uow.read(stored)
        return [account] if account else []

    async def _release(self, signup: SignUp, worker: str) -> None:
        async def release(tx: Transaction) -> None:
            await tx.signups.release(signup.id, worker)

        try:
            await self.uow.run(release)
        except Exception as exc:  # the original failure matters more; reconciliation remains
            log.warning("signup.release_failed", signup_id=signup.id, error=type(exc).__name__)

    async def _settle(self, signup: SignUp) -> None:
        async def settle(tx: Transaction) -> None:
            await tx.signups.settle(signup, expected=SignUpStatus.PENDING)

        await self.uow.run(settle)

    def _new_signup(self, cmd: RegisterUser, print_: str) -> SignUp:
        """A sign-up starts pending; its own methods say what it may become."""
        return SignUp(
            id=self.new_id(),
            applicant=cmd.applicant,
            status=SignUpStatus.PENDING,
            provider=self.provider.name,
            requested_at=self.clock(),
            idempotency_key=cmd.idempotency_key,
            fingerprint=print_,
        )

    def _event_for(self, account: CreatedAccount, applicant: Applicant) -> UserRegistered:
        # Stamped (id and time) when called: in the transaction that queues it.
        return form_event(
            account,
            applicant,
            event_id=self.new_id(),
            source=self.source,
            time=self.clock(),
            identity_provider=self.provider.name,
        )
