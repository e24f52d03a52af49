"""The built-in identity provider: accounts in the service's own database, Argon2id hashes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from argon2 import PasswordHasher, Type

from signup.domain.model import Applicant, CreatedAccount
from signup.service_layer.unit_of_work import Transaction, UnitOfWork


def new_local_user_id() -> str:
    return f"local|{secrets.token_hex(12)}"


class LocalIdentityProvider:
    """Hashes in a thread pool (argon2 releases the GIL, so both cores hash at once).

    The account row itself is written by the service layer in the same transaction as
    the sign-up and its outbox event, so creation and event can never part.
    """

    name = "local"
    transactional = True

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Callable[[], datetime],
        *,
        time_cost: int = 2,
        memory_kib: int = 19456,
        parallelism: int = 1,
        threads: int = 2,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def hash_password(self, password: str) -> str:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="argon2")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._hasher.hash, password
        )

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
            password_hash=await self.hash_password(password),
        )

    async def find_by_email(self, email: str) -> list[CreatedAccount]:
        async def look(tx: Transaction) -> CreatedAccount | None:
            return await tx.users.by_email(email)

        account = await self._uow.read(look)
        return [account] if account else []

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
