"""The built-in identity provider: accounts in the service's own database, Argon2id hashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from argon2 import PasswordHasher, Type

from signup.domain.errors import ProviderUnavailable
from signup.domain.model import Applicant, CreatedAccount

# The hashing threads run at this niceness: as many of them as cores, at 0 they took
# half the CPU from the event loop in a burst of sign-ups (and the loop answers every
# other request, `/healthz` too); lower, the loop gets the CPU it asks for first and the
# hashes the rest, which is as much CPU as before whenever the loop is not busy.
HASHING_NICENESS = 10


def _below_the_loop() -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux: per thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def new_local_user_id() -> str:
    return f"local|{secrets.token_hex(12)}"


class LocalIdentityProvider:
    """Hashes in a thread pool (argon2 releases the GIL, so both cores hash at once).

    At most `queue` hashes wait for a thread: past them a sign-up is refused at once
    (`ProviderUnavailable`, a 503 with Retry-After) instead of waiting behind a burst (a
    thousand concurrent sign-ups once waited up to 30 s, none refused). A waiting hash
    costs little memory (Argon2's memory is taken by the running ones); the bound is on
    the wait.

    It makes the account (id, Argon2id hash) and stores nothing: the service layer
    writes the account row in the same transaction as the sign-up and its outbox event,
    so creation and event can never part, and it reads accounts back from that store
    itself (`RegistrationService.accounts_for`). So this provider has no
    `find_by_email` and no database of its own.
    """

    name = "local"
    transactional = True

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        time_cost: int = 2,
        memory_kib: int = 19456,
        parallelism: int = 1,
        threads: int = 2,
        queue: int = 64,
    ) -> None:
        self._clock = clock
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._threads = threads
        self._capacity = threads + queue
        self._in_flight = 0  # hashing or waiting for a thread
        self._pool: ThreadPoolExecutor | None = None

    @property
    def hashes_in_flight(self) -> int:
        return self._in_flight

    async def hash_password(self, password: str) -> str:
        if self._in_flight >= self._capacity:
            raise ProviderUnavailable("password hashing is at capacity", retry_after=1.0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._threads, thread_name_prefix="argon2", initializer=_below_the_loop
            )
        hashed = asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, password)
        self._in_flight += 1
        hashed.add_done_callback(self._hash_done)
        # Shielded: a cancelled sign-up leaves its hash counted until the thread is done
        # with it, so the bound holds for the work the pool really has.
        return await asyncio.shield(hashed)

    def _hash_done(self, _: object) -> None:
        self._in_flight -= 1

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except Exception:
            return False

    async def create_user(self, applicant: Applicant, password: str) -> CreatedAccount:
        return CreatedAccount(
            user_id=new_local_user_id(),
            email=applicant.email,
            email_verified=False,
            created_at=self._clock(),
            given_name=applicant.given_name,
            family_name=applicant.family_name,
            name=applicant.name,
            user_metadata=applicant.profile(),
            password_hash=await self.hash_password(password),
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
