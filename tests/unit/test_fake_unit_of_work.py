"""The fake unit of work holds use cases to the real one's contract: a work may run
twice, and it may await nothing but its transaction's repositories."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from signup.domain.errors import RequestInProgress
from signup.domain.model import Applicant, SignUp, SignUpStatus
from signup.service_layer.unit_of_work import Transaction
from signup.testing.fakes import ContractBroken, FakeIdentityProvider, FakeUnitOfWork

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def intent(n: int, key: str | None = None) -> SignUp:
    return SignUp(
        id=f"intent-{n}",
        applicant=Applicant(f"ada{n}@example.com", "Ada", None),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=NOW,
        idempotency_key=key,
        fingerprint="f" * 64,
    )


async def test_a_work_runs_twice_and_only_the_second_run_is_kept() -> None:
    uow = FakeUnitOfWork()
    runs: list[int] = []

    async def add(tx: Transaction) -> int:
        # The same key twice in one state would be refused: the first run is gone.
        await tx.signups.add(intent(len(runs), key="k"))
        runs.append(len(runs))
        return len(runs)

    assert await uow.run(add) == 2, "the caller gets the second run's answer"
    assert runs == [0, 1]
    assert list(uow.state.signups) == ["intent-1"]
    assert uow.commits == 1


async def test_effects_outside_the_transaction_show_twice() -> None:
    # What a use case would see if its work counted something of its own inside the work:
    # the real unit of work re-runs a batch's works when a neighbour fails.
    uow = FakeUnitOfWork()
    queued: list[str] = []

    async def not_idempotent(tx: Transaction) -> None:
        queued.append("welcome e-mail")
        await tx.signups.add(intent(1))

    await uow.run(not_idempotent)
    assert queued == ["welcome e-mail", "welcome e-mail"]
    assert len(uow.state.signups) == 1


async def test_a_work_that_fails_only_on_its_first_run_commits_its_second() -> None:
    # As after a neighbour's failure: the work, run alone, succeeds.
    uow = FakeUnitOfWork()
    tries = 0

    async def flaky(tx: Transaction) -> None:
        nonlocal tries
        tries += 1
        await tx.signups.add(intent(tries))
        if tries == 1:
            raise RuntimeError("the batch failed")

    await uow.run(flaky)
    assert list(uow.state.signups) == ["intent-2"]


async def test_a_failing_work_leaves_the_state_as_it_was() -> None:
    uow = FakeUnitOfWork()
    await uow.run(lambda tx: tx.signups.add(intent(1, key="taken")))

    async def clash(tx: Transaction) -> None:
        await tx.signups.add(intent(2))
        await tx.signups.add(intent(3, key="taken"))

    with pytest.raises(RequestInProgress):
        await uow.run(clash)
    assert list(uow.state.signups) == ["intent-1"]
    assert uow.commits == 1


async def test_a_work_that_calls_the_provider_breaks_the_contract() -> None:
    uow = FakeUnitOfWork()
    provider = FakeIdentityProvider(lambda: NOW)

    async def remote_inside(tx: Transaction) -> None:
        await tx.signups.add(intent(1))
        await provider.create_user(intent(1).applicant, "violet tractor anthem")

    with pytest.raises(ContractBroken, match=r"remote_inside awaited None"):
        await uow.run(remote_inside)
    assert uow.state.signups == {} and uow.commits == 0


async def test_any_wait_inside_a_work_or_a_read_breaks_the_contract() -> None:
    uow = FakeUnitOfWork()
    gate = asyncio.Event()

    async def waits(tx: Transaction) -> None:
        await tx.signups.add(intent(1))
        await gate.wait()

    async def sleeps(tx: Transaction) -> SignUp | None:
        await asyncio.sleep(0.01)
        return await tx.signups.get("intent-1")

    with pytest.raises(ContractBroken, match=r"waits awaited <Future pending"):
        await uow.run(waits)
    with pytest.raises(ContractBroken, match=r"sleeps awaited <Future pending"):
        await uow.read(sleeps)
    assert uow.state.signups == {}


async def test_no_except_exception_in_the_code_under_test_hides_a_broken_contract() -> None:
    uow = FakeUnitOfWork()

    async def sleeps(tx: Transaction) -> None:
        await asyncio.sleep(0)

    async def careless_caller() -> str:
        try:
            await uow.run(sleeps)
        except Exception:
            return "swallowed"
        return "ran"

    with pytest.raises(ContractBroken):
        await careless_caller()
