"""The composition root: builds the real adapters from settings (tests pass fakes).

The web app, `signup relay` and the CLI's outbox commands take a `Container` from
`bootstrap`; the workers take their consumer from `build_consumer`. Nothing else
builds adapters, and the layers below import none of this (pyproject.toml,
`[tool.importlinter]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from signup import metrics
from signup.adapters.broker import AmqpPublisher
from signup.adapters.broker_nodes import BrokerNodes
from signup.adapters.catalogues import Catalogues
from signup.adapters.challenge import AltchaSigner, DatabaseSpentSolutions, RedisSpentSolutions
from signup.adapters.commit_watch import CommitWatch
from signup.adapters.commit_watch import follow_commits as follow
from signup.adapters.consumer import DEFAULT_PREFIX, Consumer, Handler, Topology
from signup.adapters.crm import HttpCrm
from signup.adapters.database import (
    create_engine,
    create_sqlite_reader,
    create_sqlite_writer,
    watchable,
)
from signup.adapters.email_domains import domain_rule
from signup.adapters.form_file import FormFileError, load_form
from signup.adapters.leader_lock import FileLeaderLock
from signup.adapters.liveness import build_liveness
from signup.adapters.local_users import LocalIdentityProvider
from signup.adapters.mailer import SmtpMailer
from signup.adapters.processed import SqlProcessedEvents
from signup.adapters.pwned import PwnedRanges
from signup.adapters.rate_limit import AttemptLimiter, LimitsAttemptLimiter
from signup.adapters.sql import SqlUnitOfWork
from signup.domain.events import USER_NEW, USER_SIGNUP_ATTEMPTED
from signup.domain.form import NO_FORM, FormDefinition
from signup.service_layer.challenge import ChallengeGate
from signup.service_layer.consumers import (
    CONSUMERS,
    WELCOME_EMAIL,
    Brand,
    send_welcome_email,
    sync_contact,
)
from signup.service_layer.external_accounts import ExternalAccounts
from signup.service_layer.ports import (
    Crm,
    EventPublisher,
    IdentityProvider,
    Mailer,
    PasswordRanges,
)
from signup.service_layer.reconciliation import Reconciler
from signup.service_layer.registration import RegistrationService
from signup.service_layer.relay import Relay
from signup.service_layer.retention import DeleteBatch, Pruner
from signup.service_layer.screening import BreachCheck, Screening
from signup.service_layer.sweep import Sweep
from signup.service_layer.verification import EmailVerification, VerificationLinks
from signup.settings import Settings

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    uow: SqlUnitOfWork
    provider: IdentityProvider
    registration: RegistrationService
    publisher: EventPublisher
    relay: Relay
    limiter: AttemptLimiter
    external_accounts: ExternalAccounts
    # The abuse controls a valid sign-up passes first (mail domains, breached passwords).
    screening: Screening = field(default_factory=Screening)
    engines: list[AsyncEngine] = field(default_factory=list)
    # Beside the relay, on its own schedule (None: the provider keeps no accounts apart).
    reconciler: Reconciler | None = None
    # Opening the welcome e-mail's link (None: no link is sent, SIGNUP_VERIFY_KEY unset or
    # Auth0, which verifies addresses itself).
    verification: EmailVerification | None = None
    # SIGNUP_CHALLENGE=pow: the proof-of-work gate in front of each sign-up (else None).
    challenge: ChallengeGate | None = None
    # Auth0: the sweep of accounts made outside the form (`signup sweep`), and its rounds
    # beside the relay when SIGNUP_AUTH0_SWEEP_EVERY_SECONDS is set.
    sweep: Sweep | None = None
    sweeper: Reconciler | None = None
    _reconcile_task: asyncio.Task[None] | None = None
    _sweep_task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _relay_task: asyncio.Task[None] | None = None
    _prune_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _follower: asyncio.Task[None] | None = None
    _watch: CommitWatch | None = None

    def start_relay(self, *, follow_commits: bool = False) -> None:
        """Run the relay; `follow_commits`: on a SQLite file, wake it on other processes'
        commits too (a relay apart, or several web workers)."""
        self._relay_task = asyncio.create_task(self.relay.run(self._stop), name="relay")
        if self.reconciler is not None:
            self._reconcile_task = asyncio.create_task(
                self.reconciler.run(self._stop), name="reconciler"
            )
        if self.sweeper is not None:
            self._sweep_task = asyncio.create_task(self.sweeper.run(self._stop), name="sweep")
        self._prune_tasks = [
            asyncio.create_task(make(self.settings, self.uow).run(self._stop), name=make.__name__)
            for make in (outbox_pruner, signup_pruner, notice_pruner)
        ]
        if self.challenge is not None and isinstance(self.challenge.spent, DatabaseSpentSolutions):
            spent = challenge_pruner(self.settings, self.challenge.spent, self.uow.clock)
            self._prune_tasks.append(asyncio.create_task(spent.run(self._stop), name="spent"))
        if follow_commits and watchable(self.settings.database_url):
            self._watch = CommitWatch(self.settings.database_url)
            self._follower = asyncio.create_task(
                follow(self.relay, self._watch.changed, self._stop),
                name="relay-follower",
            )

    async def aclose(self) -> None:
        self._stop.set()
        if self._relay_task is not None:
            try:
                await asyncio.wait_for(self._relay_task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._relay_task.cancel()
        if self._reconcile_task is not None:
            await self._reconcile_task  # a round under way is cancelled by the stop
        if self._sweep_task is not None:
            await self._sweep_task
        if self._follower is not None:
            await self._follower
        for task in self._prune_tasks:
            await task
        if self._watch is not None:
            self._watch.close()
        await self.uow.close()
        if self.registration.liveness is not None:
            await self.registration.liveness.close()
        if self.challenge is not None:
            await self.challenge.close()
        closers = [self.provider.close, self.publisher.close, self.limiter.close]
        if self.screening.breached is not None:
            closers.append(self.screening.breached.ranges.close)
        for closer in closers:
            with contextlib.suppress(Exception):
                await closer()
        for engine in self.engines:
            await engine.dispose()


def pruner(
    settings: Settings,
    name: str,
    delete_batch: DeleteBatch,
    clock: Callable[[], datetime],
    retention_days: float,
) -> Pruner:
    """A pruner of `name` on the settings' schedule and batch (SIGNUP_PRUNE_*)."""
    return Pruner(
        name=name,
        delete_batch=delete_batch,
        clock=clock,
        retention=timedelta(days=retention_days),
        batch=settings.prune_batch_size,
        pause=settings.prune_pause_seconds,
        every=settings.prune_every_seconds,
    )


def outbox_pruner(settings: Settings, uow: SqlUnitOfWork) -> Pruner:
    """Deletes published outbox rows past SIGNUP_OUTBOX_RETENTION_DAYS, beside the relay."""

    async def delete_batch(before: datetime, limit: int) -> int:
        return await uow.run(lambda tx: tx.outbox.prune_published(before, limit))

    return pruner(settings, "outbox", delete_batch, uow.clock, settings.outbox_retention_days)


def signup_pruner(settings: Settings, uow: SqlUnitOfWork) -> Pruner:
    """Deletes sign-ups settled before SIGNUP_SIGNUP_RETENTION_DAYS, beside the relay."""

    async def delete_batch(before: datetime, limit: int) -> int:
        return await uow.run(lambda tx: tx.signups.prune_settled(before, limit))

    return pruner(settings, "signups", delete_batch, uow.clock, settings.signup_retention_days)


def notice_pruner(settings: Settings, uow: SqlUnitOfWork) -> Pruner:
    """Deletes the records of owners' notices (SIGNUP_HIDE_EXISTING_ACCOUNTS) a day old:
    only the last hour's count."""

    async def delete_batch(before: datetime, limit: int) -> int:
        return await uow.run(lambda tx: tx.attempt_notices.prune(before, limit))

    return pruner(settings, "attempt_notices", delete_batch, uow.clock, 1.0)


def form_definition(settings: Settings) -> FormDefinition:
    """The site's form (`SIGNUP_FORM_FILE`), or the built-in one; `FormFileError` if the
    file has a mistake (start-up stops: never a half-working form)."""
    return NO_FORM if settings.form_file is None else load_form(settings.form_file)


__all__ = ["FormFileError", "bootstrap", "form_definition"]


def challenge_pruner(
    settings: Settings, spent: DatabaseSpentSolutions, clock: Callable[[], datetime]
) -> Pruner:
    """Deletes used proof-of-work solutions once expired (a minute's margin for clocks)."""
    return Pruner(
        name="spent_challenges",
        delete_batch=spent.prune_expired,
        clock=clock,
        retention=timedelta(seconds=60),
        batch=settings.prune_batch_size,
        pause=settings.prune_pause_seconds,
        every=settings.prune_every_seconds,
    )


def build_challenge(
    settings: Settings, uow: SqlUnitOfWork, clock: Callable[[], datetime]
) -> ChallengeGate | None:
    """SIGNUP_CHALLENGE=pow: ALTCHA challenges under SIGNUP_CHALLENGE_KEY; used solutions
    in Redis when SIGNUP_REDIS_URL is set, else in the database."""
    if settings.challenge != "pow":
        return None
    assert settings.challenge_key is not None  # the settings refuse pow without one
    signer = AltchaSigner(
        settings.challenge_key.get_secret_value(),
        [key.get_secret_value() for key in settings.challenge_previous_keys],
        settings.challenge_difficulty,
    )
    redis_url = settings.redis_url.get_secret_value().strip() if settings.redis_url else ""
    spent = RedisSpentSolutions(redis_url) if redis_url else DatabaseSpentSolutions(uow)
    return ChallengeGate(signer, spent, clock, timedelta(seconds=settings.challenge_ttl_seconds))


def build_provider(settings: Settings, clock: Callable[[], datetime]) -> IdentityProvider:
    if settings.identity_provider == "auth0":
        from signup.adapters.auth0 import Auth0IdentityProvider

        return Auth0IdentityProvider.from_settings(settings)
    return LocalIdentityProvider(
        clock,
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        queue=settings.argon2_queue,
    )


def build_screening(settings: Settings, ranges: PasswordRanges | None = None) -> Screening:
    """The mail domain rule (the package's list is read here, at start) and, when
    SIGNUP_BREACHED_PASSWORDS=check, the breached-password check over `ranges`."""
    breached = None
    if settings.breached_passwords == "check":
        breached = BreachCheck(
            ranges=ranges or PwnedRanges.from_settings(settings),
            min_count=settings.breached_min_count,
            fail_closed=settings.breached_fail == "closed",
            cache_seconds=settings.breached_cache_seconds,
            cache_size=settings.breached_cache_size,
        )
    return Screening(domains=domain_rule(settings), breached=breached)


def bootstrap(
    settings: Settings,
    *,
    provider: IdentityProvider | None = None,
    publisher: EventPublisher | None = None,
    limiter: AttemptLimiter | None = None,
    ranges: PasswordRanges | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Container:
    """Wire everything; nothing connects until first used (engines and clients are lazy)."""
    sync = settings.sqlite_synchronous
    writer = create_engine(settings.database_url, writer=True, synchronous=sync)
    reader = create_engine(settings.database_url, synchronous=sync)
    uow = SqlUnitOfWork(
        writer=writer,
        reader=reader,
        clock=clock,
        inline_writer=create_sqlite_writer(settings.database_url, sync),
        inline_reader=create_sqlite_reader(settings.database_url, sync),
    )
    provider = provider or build_provider(settings, clock)
    registration = RegistrationService(
        uow=uow,
        provider=provider,
        clock=clock,
        source=settings.event_source,
        hide_existing=settings.hide_existing_accounts,
        in_flight_for=timedelta(seconds=settings.auth0_timeout_seconds * 3),
        liveness=None if provider.transactional else build_liveness(settings.database_url, reader),
        decoy_key=decoy_key(settings),
    )
    publisher = publisher or AmqpPublisher(BrokerNodes(settings.amqp_urls), settings.exchange)

    external_accounts = ExternalAccounts(
        uow=uow,
        clock=clock,
        source=settings.event_source,
        identity_provider=provider.name,
        complete_signup=registration.complete,
    )

    async def reconcile() -> None:
        report = await registration.reconcile(timedelta(seconds=settings.reconcile_after_seconds))
        for result, count in report.items():
            if count:
                metrics.RECONCILIATIONS.labels(result).inc(count)
        # Accounts Auth0 told of while their form sign-up was pending: announced by now,
        # unless that sign-up was abandoned (then as they were seen).
        await external_accounts.settle_sightings()

    relay = Relay(
        uow=uow,
        publisher=publisher,
        clock=clock,
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        lease_seconds=settings.relay_lease_seconds,
        exclusive=settings.is_sqlite,
        leader_lock=FileLeaderLock.for_database(settings.database_url),
    )
    # Only the publishing relay's process reconciles: on SQLite one, on PostgreSQL each.
    reconciler = (
        None
        if provider.transactional
        else Reconciler(
            reconcile,
            every=settings.reconcile_every_seconds,
            may_run=lambda: relay.leading,
        )
    )
    sweep = build_sweep(settings, provider, external_accounts, uow, clock)
    every = settings.auth0_sweep_every_seconds
    # As reconciliation: only the publishing relay's process sweeps (the leader lock).
    sweeper = (
        Reconciler(sweep.run, every=every, may_run=lambda: relay.leading)
        if sweep is not None and every
        else None
    )
    uow.on_outbox_written = relay.committed
    limiter = limiter or LimitsAttemptLimiter(
        {"ip": settings.rate_limit_per_ip, "email": settings.rate_limit_per_email},
        settings.redis_url.get_secret_value() if settings.redis_url else None,
    )
    return Container(
        settings=settings,
        uow=uow,
        provider=provider,
        registration=registration,
        publisher=publisher,
        relay=relay,
        limiter=limiter,
        screening=build_screening(settings, ranges),
        external_accounts=external_accounts,
        engines=[writer, reader],
        reconciler=reconciler,
        challenge=build_challenge(settings, uow, clock),
        verification=email_verification(settings, uow, clock),
        sweep=sweep,
        sweeper=sweeper,
    )


def build_sweep(
    settings: Settings,
    provider: IdentityProvider,
    accounts: ExternalAccounts,
    uow: SqlUnitOfWork,
    clock: Callable[[], datetime],
) -> Sweep | None:
    """The sweep, on the provider's user search: Auth0 only (None otherwise)."""
    from signup.adapters.auth0 import Auth0IdentityProvider
    from signup.adapters.auth0.search import Auth0AccountSearch

    if not isinstance(provider, Auth0IdentityProvider):
        return None
    return Sweep(
        search=Auth0AccountSearch(provider),
        accounts=accounts,
        uow=uow,
        clock=clock,
        overlap=timedelta(seconds=settings.auth0_sweep_overlap_seconds),
    )


def decoy_key(settings: Settings) -> bytes:
    """The honeypot's decoy ids' key: from a secret every process shares (the
    challenge's or the links' key, under a label of its own, so that it reveals neither),
    else one of this process's own (a repeat on another process then gets another id)."""
    shared = settings.challenge_key or settings.verify_key
    if shared is None:
        return secrets.token_bytes(32)
    secret = shared.get_secret_value().encode()
    return hmac.new(secret, b"signup honeypot decoy ids", hashlib.sha256).digest()


def email_verification(
    settings: Settings, uow: SqlUnitOfWork, clock: Callable[[], datetime]
) -> EmailVerification | None:
    if not settings.verifies_email or settings.verify_key is None:
        return None
    return EmailVerification(
        uow=uow,
        key=settings.verify_key.get_secret_value().encode(),
        clock=clock,
        source=settings.event_source,
    )


def verification_links(
    settings: Settings, clock: Callable[[], datetime] = utc_now
) -> VerificationLinks | None:
    """The welcome e-mail's link maker (None: local accounts are not verified)."""
    if not settings.verifies_email or settings.verify_key is None:
        return None
    return VerificationLinks(
        key=settings.verify_key.get_secret_value().encode(),
        site_url=settings.site_url,
        ttl=timedelta(seconds=settings.verify_ttl_seconds),
        clock=clock,
    )


# ---- the workers -------------------------------------------------------------------


def topology_for(name: str, settings: Settings, *, prefix: str = DEFAULT_PREFIX) -> Topology:
    # The welcome e-mail worker also tells owners of someone's attempt with their address.
    keys = (USER_NEW, USER_SIGNUP_ATTEMPTED) if name == WELCOME_EMAIL else (USER_NEW,)
    return Topology(
        routing_keys=keys,
        name=name,
        exchange=settings.exchange,
        retry_delays_seconds=tuple(settings.worker_retry_delays_seconds),
        delivery_limit=settings.worker_delivery_limit,
        prefix=prefix,
    )


@contextlib.asynccontextmanager
async def build_consumer(
    name: str,
    settings: Settings,
    *,
    prefix: str = DEFAULT_PREFIX,
    mailer: Mailer | None = None,
    crm: Crm | None = None,
) -> AsyncIterator[Consumer]:
    """The consumer NAME wired to its real adapters (or the given ones); closes them after."""
    if name not in CONSUMERS:
        raise ValueError(f"unknown consumer {name!r}; known: {', '.join(CONSUMERS)}")
    own_crm: Crm | None = None
    handler: Handler
    if name == WELCOME_EMAIL:
        catalogues = Catalogues.load(settings.brand_dir)
        brand = Brand(
            site_name=settings.site_name,
            site_url=settings.site_url,
            mail_from=settings.mail_from,
            verification=verification_links(settings),
            translations=catalogues.translations,
            languages=catalogues.languages,
            sign_in_url=settings.sign_in_url,
        )
        handler = functools.partial(
            send_welcome_email, mailer=mailer or SmtpMailer.from_settings(settings), brand=brand
        )
    else:
        if crm is None:
            crm = own_crm = HttpCrm.from_settings(settings)
        handler = functools.partial(sync_contact, crm=crm)
    engine = create_engine(
        settings.database_url, pool_size=2, synchronous=settings.sqlite_synchronous
    )
    processed = SqlProcessedEvents(engine)
    try:
        yield Consumer(
            topology=topology_for(name, settings, prefix=prefix),
            amqp_url=BrokerNodes(settings.amqp_urls),
            handler=handler,
            processed=processed,
            prefetch=settings.worker_prefetch,
            pruner=pruner(
                settings,
                "processed_events",
                functools.partial(processed.prune, name),
                utc_now,
                settings.processed_retention_days,
            ),
        )
    finally:
        if own_crm is not None:
            await own_crm.close()
        await engine.dispose()
