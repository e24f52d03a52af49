"""The unit of work, the outbox and the relay on real SQLite/PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from aio_pika.abc import AbstractQueue
from sqlalchemy import select

from signup.adapters import tables
from signup.adapters.broker import AmqpPublisher
from signup.adapters.commit_watch import CommitWatch, follow_commits
from signup.adapters.database import (
    create_engine,
    create_sqlite_reader,
    create_sqlite_writer,
)
from signup.adapters.local_users import LocalIdentityProvider
from signup.adapters.sql import SqlUnitOfWork
from signup.domain.commands import RegisterUser
from signup.domain.errors import EmailAlreadyRegistered
from signup.domain.events import UserRegistered, UserRegisteredData
from signup.domain.model import Applicant, SignUp, SignUpStatus
from signup.service_layer.ports import OutboxEntry, PublishResult
from signup.service_layer.registration import RegistrationService
from signup.service_layer.relay import Relay
from signup.service_layer.unit_of_work import Transaction


def now() -> datetime:
    return datetime.now(UTC)


def make_uow(database_url: str) -> SqlUnitOfWork:
    """As `bootstrap` builds it: on a SQLite file, batches run on the plain writer."""
    return SqlUnitOfWork(
        writer=create_engine(database_url, writer=True),
        reader=create_engine(database_url),
        clock=now,
        inline_writer=create_sqlite_writer(database_url),
    )


async def close_uow(unit: SqlUnitOfWork) -> None:
    await unit.close()
    await unit.writer.dispose()
    await unit.reader.dispose()


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[SqlUnitOfWork]:
    unit = make_uow(database_url)
    yield unit
    await close_uow(unit)


def local_service(uow: SqlUnitOfWork) -> RegistrationService:
    # A queue for the largest burst here (160): these tests are about the outbox, not
    # about refusing sign-ups past the hashing queue (tests/unit/test_local_hashing.py).
    provider = LocalIdentityProvider(now, time_cost=1, memory_kib=1024, queue=256)
    return RegistrationService(uow=uow, provider=provider, clock=now, source="urn:signup:test")


def command(email: str) -> RegisterUser:
    return RegisterUser(Applicant(email, "Ada", None), "violet tractor anthem")


async def last_errors(uow: SqlUnitOfWork) -> list[str | None]:
    """Why each unpublished outbox row was last given back by the relay."""
    o = tables.outbox.c
    query = select(o.last_error).where(o.published_at.is_(None)).order_by(o.id)
    async with uow.reader.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def drain_all(
    queue: AbstractQueue, expect: int, seconds: float = 15
) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    for _ in range(int(seconds * 20)):
        message = await queue.get(fail=False)
        if message is None:
            if len(got) >= expect:
                break
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        got.append(orjson.loads(message.body))
    return got


async def test_concurrent_signups_each_have_one_event(uow: SqlUnitOfWork) -> None:
    service = local_service(uow)
    emails = [f"user{i}@example.com" for i in range(40)]
    duplicates = ["same@example.com"] * 8
    results = await asyncio.gather(
        *(service.register(command(e)) for e in emails + duplicates), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, EmailAlreadyRegistered)]
    assert len(created) == 41 and len(refused) == 7, [
        r for r in results if isinstance(r, Exception)
    ]
    status = await uow.read(lambda tx: tx.outbox.status())
    assert status.pending == 41


def intent(n: int) -> SignUp:
    return SignUp(
        id=f"intent-{n}",
        applicant=Applicant(f"together{n}@example.com", "Ada", None),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=now(),
        idempotency_key=None,
        fingerprint="f" * 64,
    )


async def test_works_handed_over_together_share_one_commit(uow: SqlUnitOfWork) -> None:
    # Group commit (docs/decisions/0001-group-commit.md): every work handed to the unit
    # of work before its writer's next turn goes into that turn's transaction. The works
    # are all handed over within one turn of the loop, so exactly one commit, on either
    # database; one commit a work would be 40.
    async def add(tx: Transaction, signup: SignUp) -> None:
        await tx.signups.add(signup)

    before = uow.batches
    await asyncio.gather(*(uow.run(lambda tx, n=n: add(tx, intent(n))) for n in range(40)))
    assert uow.batches - before == 1, "works handed over together commit together"

    async def stored(tx: Transaction) -> list[SignUp | None]:
        return [await tx.signups.get(f"intent-{n}") for n in range(40)]

    assert all(s is not None for s in await uow.read(stored))


async def test_relay_publishes_every_event_once_with_confirms(
    uow: SqlUnitOfWork, amqp_url: str, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    service = local_service(uow)
    for i in range(25):
        await service.register(command(f"r{i}@example.com"))
    publisher = AmqpPublisher(amqp_url, exchange_name)
    relay = Relay(uow=uow, publisher=publisher, clock=now, batch_size=10)
    try:
        total = 0
        while (sent := await relay.drain_once())[0]:
            total += sent[0]
        assert total == 25
        assert await relay.drain_once() == (0, 0)
    finally:
        await publisher.close()
    events = await drain_all(bound_queue, 25)
    assert len({e["id"] for e in events}) == 25
    status = await uow.read(lambda tx: tx.outbox.status(count_published=True))
    assert (status.pending, status.published) == (0, 25)


async def test_broker_away_keeps_events_until_it_returns(
    uow: SqlUnitOfWork, amqp_url: str, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    service = local_service(uow)
    for i in range(5):
        await service.register(command(f"away{i}@example.com"))
    unreachable = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/", exchange_name)
    relay = Relay(uow=uow, publisher=unreachable, clock=now, lease_seconds=0.01)
    assert await relay.drain_once() == (0, 5)
    assert (await uow.read(lambda tx: tx.outbox.status())).pending == 5
    reasons = await last_errors(uow)
    assert len(reasons) == 5 and all(r and r.startswith("broker unreachable: ") for r in reasons), (
        reasons
    )
    await asyncio.sleep(0.05)  # past the lease of the failed claim
    publisher = AmqpPublisher(amqp_url, exchange_name)
    try:
        assert await Relay(uow=uow, publisher=publisher, clock=now).drain_once() == (5, 0)
    finally:
        await publisher.close()
    assert len(await drain_all(bound_queue, 5)) == 5


async def test_unroutable_events_are_not_marked_sent(uow: SqlUnitOfWork, amqp_url: str) -> None:
    await local_service(uow).register(command("lonely@example.com"))
    publisher = AmqpPublisher(amqp_url, f"test-unbound-{uuid.uuid4().hex[:8]}")
    try:
        assert await Relay(uow=uow, publisher=publisher, clock=now).drain_once() == (0, 1)
    finally:
        await publisher.close()
    assert (await uow.read(lambda tx: tx.outbox.status())).pending == 1
    # Failed for the right reason: the broker returned it (mandatory, no queue bound to
    # this exchange), not a broken connection or a timeout.
    assert await last_errors(uow) == ["returned unroutable (mandatory): no queue bound"]


async def test_relays_sharing_an_outbox_never_publish_an_event_twice(
    postgres_url: str, amqp_url: str, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    units = [
        SqlUnitOfWork(
            writer=create_engine(postgres_url, writer=True),
            reader=create_engine(postgres_url),
            clock=now,
        )
        for _ in range(3)
    ]
    service = local_service(units[0])
    await asyncio.gather(*(service.register(command(f"pg{i}@example.com")) for i in range(90)))
    publishers = [AmqpPublisher(amqp_url, exchange_name) for _ in units]
    relays = [
        Relay(uow=u, publisher=p, clock=now, batch_size=7)
        for u, p in zip(units, publishers, strict=True)
    ]

    async def drain(relay: Relay) -> int:
        total = 0
        while sent := (await relay.drain_once())[0]:
            total += sent
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == 90
    events = await drain_all(bound_queue, 90)
    assert len(events) == 90 and len({e["id"] for e in events}) == 90
    for unit, publisher in zip(units, publishers, strict=True):
        await publisher.close()
        await unit.close()
        await unit.writer.dispose()
        await unit.reader.dispose()


async def test_on_sqlite_one_relay_holds_the_lease(sqlite_url: str) -> None:
    writer, reader = create_engine(sqlite_url, writer=True), create_engine(sqlite_url)
    uow = SqlUnitOfWork(writer=writer, reader=reader, clock=now)
    first = Relay(uow=uow, publisher=None, clock=now, exclusive=True, holder="a")  # type: ignore[arg-type]
    second = Relay(uow=uow, publisher=None, clock=now, exclusive=True, holder="b")  # type: ignore[arg-type]
    assert await first._hold_lease()
    assert not await second._hold_lease()
    await uow.run(first._release_lease)
    assert await second._hold_lease()
    await uow.close()
    await writer.dispose()
    await reader.dispose()


async def test_a_failed_work_in_a_batch_does_not_take_its_neighbours(uow: SqlUnitOfWork) -> None:
    service = local_service(uow)
    await service.register(command("taken@example.com"))

    async def boom(tx: Transaction) -> None:
        await tx.signups.unsettled_for_email("x")
        raise RuntimeError("this work fails")

    results = await asyncio.gather(
        *(service.register(command(f"n{i}@example.com")) for i in range(10)),
        uow.run(boom),
        service.register(command("taken@example.com")),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 10
    assert isinstance(results[10], RuntimeError) and isinstance(results[11], EmailAlreadyRegistered)
    assert (await uow.read(lambda tx: tx.outbox.status())).pending == 11


async def test_two_processes_writers_on_one_sqlite_file_take_turns(sqlite_url: str) -> None:
    # Two units of work stand for the web app and a relay (or a second worker): each has
    # its own connection and they queue on the file lock, never on SQLite's busy sleeps.
    first, second = make_uow(sqlite_url), make_uow(sqlite_url)
    try:
        results = await asyncio.gather(
            *(local_service(first).register(command(f"a{i}@example.com")) for i in range(40)),
            *(local_service(second).register(command(f"b{i}@example.com")) for i in range(40)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], "".join(traceback.format_exception(errors[0]))
        status = await first.read(lambda tx: tx.outbox.status())
        assert status.pending == 80
        assert first.batches + second.batches < 160, "each side still commits in batches"
    finally:
        await close_uow(first)
        await close_uow(second)


async def test_a_relay_apart_learns_of_another_process_commit_without_polling(
    sqlite_url: str, amqp_url: str, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    web, apart = make_uow(sqlite_url), make_uow(sqlite_url)
    await local_service(web).register(command("warm@example.com"))  # schema in place
    publisher = AmqpPublisher(amqp_url, exchange_name)
    relay = Relay(uow=apart, publisher=publisher, clock=now, poll_seconds=60.0)
    watch = CommitWatch(sqlite_url)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(follow_commits(relay, watch.changed, stop)),
    ]
    try:
        assert len(await drain_all(bound_queue, 1, seconds=5)) == 1
        await local_service(web).register(command("later@example.com"))
        # Well under the relay's 60 s poll: only the commit watch can have woken it.
        events = await drain_all(bound_queue, 1, seconds=5)
        assert [e["data"]["email"] for e in events] == ["later@example.com"]  # type: ignore[index]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        watch.close()
        await publisher.close()
        await close_uow(web)
        await close_uow(apart)


class SlowToConfirm:
    """The broker's confirms as late as a durable queue's disk makes them under load."""

    def __init__(self, publisher: AmqpPublisher, seconds: float) -> None:
        self.inner, self.seconds = publisher, seconds
        self.connected = True

    async def publish(self, entries: list[OutboxEntry]) -> PublishResult:
        result = await self.inner.publish(entries)
        await asyncio.sleep(self.seconds)
        return result

    async def close(self) -> None:
        await self.inner.close()


async def test_rows_handed_over_at_commit_are_published_once_each(
    sqlite_url: str, amqp_url: str, exchange_name: str, bound_queue: AbstractQueue
) -> None:
    # As `bootstrap` wires it: quick reads on the plain engine, the relay told of commits.
    uow = make_uow(sqlite_url)
    uow.inline_reader = create_sqlite_reader(sqlite_url)
    publisher = SlowToConfirm(AmqpPublisher(amqp_url, exchange_name), seconds=0.02)
    relay = Relay(uow=uow, publisher=publisher, clock=now, exclusive=True)
    uow.on_outbox_written = relay.committed
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        service = local_service(uow)
        # Sign-ups one after another, each its own commit, while earlier batches wait
        # for their confirms; then a burst.
        for i in range(40):
            await service.register(command(f"h{i}@example.com"))
        await asyncio.gather(
            *(service.register(command(f"h{i}@example.com")) for i in range(40, 200))
        )
        async with asyncio.timeout(15):
            while relay.published < 200:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
        await publisher.close()
        await close_uow(uow)
    events = await drain_all(bound_queue, 200)
    assert len(events) == 200 and len({e["id"] for e in events}) == 200
    assert relay.taken_at_commit > 0, "some batches went out straight from their commit"


async def test_a_failing_commit_notice_leaves_no_work_waiting(sqlite_url: str) -> None:
    uow = make_uow(sqlite_url)

    def broken(entries: list[OutboxEntry]) -> None:
        raise RuntimeError("the relay is gone")

    def event(n: int) -> UserRegistered:
        data = UserRegisteredData(
            user_id=f"auth0|{n}",
            email=f"n{n}@example.com",
            email_verified=False,
            given_name=None,
            family_name=None,
            name=f"n{n}",
            created_at=now(),
            identity_provider="auth0",
        )
        return UserRegistered(id=str(uuid.uuid4()), source="urn:test", time=now(), data=data)

    uow.on_outbox_written = broken
    uow.max_batch = 1  # three works submitted at once: three commits, one after another
    try:
        async with asyncio.timeout(10):
            await asyncio.gather(
                *(uow.run(lambda tx, n=n: tx.outbox.add(event(n))) for n in range(3))
            )
        assert (await uow.read(lambda tx: tx.outbox.status())).pending == 3
    finally:
        await close_uow(uow)
