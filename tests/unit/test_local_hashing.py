"""The local provider's Argon2 queue is bounded: past it a sign-up is refused at once (503)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher

from signup.adapters.local_users import LocalIdentityProvider
from signup.domain.commands import RegisterUser
from signup.domain.errors import ProviderUnavailable
from signup.domain.model import Applicant
from signup.service_layer.registration import Registered, RegistrationService
from signup.testing.fakes import FakeUnitOfWork, ManualClock

PASSWORD = "violet tractor anthem"
THREADS, QUEUE = 2, 3


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))


@pytest.fixture
async def provider(clock: ManualClock) -> AsyncIterator[LocalIdentityProvider]:
    # Real Argon2id, made cheap: the bound is what is under test, not the cost.
    local = LocalIdentityProvider(clock, time_cost=1, memory_kib=8, threads=THREADS, queue=QUEUE)
    yield local
    await local.close()


async def until_idle(provider: LocalIdentityProvider) -> None:
    for _ in range(500):
        if provider.hashes_in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{provider.hashes_in_flight} hash(es) still counted")


async def test_a_burst_past_threads_and_queue_is_refused_at_once(
    provider: LocalIdentityProvider,
) -> None:
    burst = 20
    results = await asyncio.gather(
        *(provider.hash_password(f"{PASSWORD} {i}") for i in range(burst)),
        return_exceptions=True,
    )
    hashed = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, ProviderUnavailable)]
    # Every coroutine of the burst asks before any hash is done: exactly the threads
    # and the queue get in.
    assert len(hashed) == THREADS + QUEUE
    assert len(refused) == burst - THREADS - QUEUE
    assert all(r.retry_after >= 1 for r in refused)
    assert all(PASSWORD not in r.reason for r in refused)
    verifier = PasswordHasher()
    assert verifier.verify(hashed[0], f"{PASSWORD} 0")
    await until_idle(provider)
    # The room is given back: the next burst gets as far as the first.
    again = await asyncio.gather(
        *(provider.hash_password(PASSWORD) for _ in range(THREADS + QUEUE + 1)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, str) for r in again) == THREADS + QUEUE


async def test_a_zero_queue_admits_only_as_many_as_threads(clock: ManualClock) -> None:
    local = LocalIdentityProvider(clock, time_cost=1, memory_kib=8, threads=1, queue=0)
    try:
        results = await asyncio.gather(
            local.hash_password(PASSWORD), local.hash_password(PASSWORD), return_exceptions=True
        )
        assert isinstance(results[0], str) and isinstance(results[1], ProviderUnavailable)
    finally:
        await local.close()


class GatedHasher:
    """Argon2id that starts only once the gate opens: a hash held running in its thread."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self._real = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    def hash(self, password: str) -> str:
        assert self.gate.wait(10), "the gate was never opened"
        return self._real.hash(password)


async def test_a_cancelled_sign_up_keeps_its_hash_counted_until_the_thread_is_done(
    clock: ManualClock,
) -> None:
    local = LocalIdentityProvider(clock, threads=1, queue=0)
    gated = GatedHasher()
    local._hasher = gated  # type: ignore[assignment]
    try:
        waiter = asyncio.create_task(local.hash_password(PASSWORD))
        await asyncio.sleep(0)  # the task starts and hands the hash to the thread
        assert local.hashes_in_flight == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The thread is still busy with the cancelled sign-up's hash: no room yet.
        with pytest.raises(ProviderUnavailable):
            await local.hash_password(PASSWORD)
        gated.gate.set()
        await until_idle(local)
        assert isinstance(await local.hash_password(PASSWORD), str)
    finally:
        gated.gate.set()
        await local.close()


async def test_a_refused_sign_up_stores_nothing_and_its_neighbours_complete(
    provider: LocalIdentityProvider, clock: ManualClock
) -> None:
    uow = FakeUnitOfWork()
    service = RegistrationService(uow=uow, provider=provider, clock=clock, source="urn:signup:test")
    burst = 12
    results = await asyncio.gather(
        *(
            service.register(
                RegisterUser(Applicant(f"p{i}@example.com", None, None), PASSWORD, None)
            )
            for i in range(burst)
        ),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, Registered)]
    refused = [r for r in results if isinstance(r, ProviderUnavailable)]
    assert len(created) + len(refused) == burst, results
    assert created and refused
    assert len(created) <= THREADS + QUEUE
    assert {u.email for u in uow.state.users.values()} == {r.email for r in created}
    assert len(uow.state.outbox) == len(created)
    assert len(uow.state.signups) == len(created)
    assert PASSWORD not in repr(uow.state)
