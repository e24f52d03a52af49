"""The database itself refuses a second created sign-up for one account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from signup.adapters.database import create_engine
from signup.adapters.sql import SqlUnitOfWork
from signup.domain.errors import AccountAlreadyCompleted
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.registration import RegistrationService
from signup.service_layer.unit_of_work import Transaction
from signup.testing.fakes import FakeIdentityProvider


def now() -> datetime:
    return datetime.now(UTC)


def pending(n: int) -> SignUp:
    return SignUp(f"s-{n}", Applicant("ada@example.com"), SignUpStatus.PENDING, "auth0", now())


@pytest.fixture
async def units(database_url: str) -> AsyncIterator[list[SqlUnitOfWork]]:
    """Two units of work with engines of their own, as two processes would have."""
    made = [
        SqlUnitOfWork(
            writer=create_engine(database_url, writer=True),
            reader=create_engine(database_url),
            clock=now,
        )
        for _ in range(2)
    ]
    yield made
    for unit in made:
        await unit.close()
        await unit.writer.dispose()
        await unit.reader.dispose()


async def test_a_second_created_signup_for_an_account_is_refused(
    units: list[SqlUnitOfWork],
) -> None:
    uow = units[0]
    for n in (1, 2):
        signup = pending(n)

        async def add(tx: Transaction, signup: SignUp = signup) -> None:
            await tx.signups.add(signup)

        await uow.run(add)

    async def complete(tx: Transaction, n: int) -> bool:
        created = replace(
            pending(n), status=SignUpStatus.CREATED, user_id="auth0|1", event_id=f"e{n}"
        )
        return await tx.signups.settle(created, expected=SignUpStatus.PENDING)

    assert await uow.run(lambda tx: complete(tx, 1))
    with pytest.raises(AccountAlreadyCompleted):
        await uow.run(lambda tx: complete(tx, 2))


async def test_simultaneous_completions_in_two_processes_queue_one_event(
    units: list[SqlUnitOfWork],
) -> None:
    account = CreatedAccount("auth0|race", "ada@example.com", False, now())
    services = [
        RegistrationService(uow=u, provider=FakeIdentityProvider(now), clock=now, source="s")
        for u in units
    ]
    for round_ in range(8):
        first, second = pending(100 + 2 * round_), pending(101 + 2 * round_)
        account = replace(account, user_id=f"auth0|race{round_}")
        for signup in (first, second):

            async def add(tx: Transaction, signup: SignUp = signup) -> None:
                await tx.signups.add(signup)

            await units[0].run(add)
        answers = await asyncio.gather(
            services[0]._complete(first, account), services[1]._complete(second, account)
        )
        assert {a.user_id for a in answers} == {account.user_id}
        status = await units[0].read(lambda tx: tx.outbox.status())
        assert status.pending == round_ + 1, "exactly one event per account"
