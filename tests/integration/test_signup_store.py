"""Settling a sign-up on SQLite writes what settling changes, and releases a key only
when the sign-up is abandoned; the WAL stays bounded however long writes go on."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC

from test_outbox_relay import close_uow, make_uow, now

from signup.adapters.sql import SqlUnitOfWork
from signup.domain.model import Applicant, SignUp, SignUpStatus
from signup.service_layer.unit_of_work import Transaction


def pending(key: str) -> SignUp:
    return SignUp(
        id=f"id-{key}",
        applicant=Applicant(f"{key}@example.com", "Ada", "Lovelace"),
        status=SignUpStatus.PENDING,
        provider="auth0",
        requested_at=now(),
        idempotency_key=key,
        fingerprint="f" * 64,
    )


async def stored(uow: SqlUnitOfWork, key: str) -> SignUp | None:
    async def by_key(tx: Transaction) -> SignUp | None:
        return await tx.signups.by_idempotency_key(key)

    return await uow.read(by_key)


async def test_settling_keeps_the_key_unless_abandoned_and_never_touches_the_request(
    sqlite_url: str,
) -> None:
    uow = make_uow(sqlite_url)
    try:
        kept, released = pending("kept"), pending("released")

        async def add(tx: Transaction) -> None:
            await tx.signups.add(kept)
            await tx.signups.add(released)

        await uow.run(add)
        created = replace(
            kept,
            status=SignUpStatus.CREATED,
            user_id="auth0|1",
            event_id="e-1",
            response_status=201,
            response_body={"user_id": "auth0|1", "email": "kept@example.com"},
        )
        abandoned = replace(released, status=SignUpStatus.ABANDONED, idempotency_key=None)

        async def settle(tx: Transaction) -> tuple[bool, bool]:
            return (
                await tx.signups.settle(created, expected=SignUpStatus.PENDING),
                await tx.signups.settle(abandoned, expected=SignUpStatus.PENDING),
            )

        assert await uow.run(settle) == (True, True)
        replayed = await stored(uow, "kept")
        assert replayed is not None
        assert (replayed.status, replayed.user_id, replayed.event_id) == (
            SignUpStatus.CREATED,
            "auth0|1",
            "e-1",
        )
        assert replayed.response_body == created.response_body
        assert (replayed.applicant, replayed.fingerprint) == (kept.applicant, kept.fingerprint)
        assert replayed.requested_at == kept.requested_at.replace(tzinfo=UTC)
        assert await stored(uow, "released") is None, "an abandoned sign-up frees its key"
    finally:
        await close_uow(uow)


async def test_the_wal_stays_bounded_while_writes_never_pause(sqlite_url: str) -> None:
    """A PASSIVE checkpoint beside a writer that never pauses never catches up with it,
    and SQLite rewinds the WAL only once all of it is copied back: measured, the WAL
    grew by ~20 MB a second under the benchmark's load and never shrank. The unit of
    work rewinds it once it passes its limit, whatever the load."""
    uow = make_uow(sqlite_url)
    uow.checkpoint_every = 0.02
    uow.wal_limit_bytes = 1024 * 1024
    wal = f"{sqlite_url.split(':///', 1)[1]}-wal"
    largest = 0
    try:
        written = 0

        async def writer(n: int) -> None:
            nonlocal written, largest
            for i in range(200):
                signup = pending(f"w{n}-{i}")

                async def add(tx: Transaction, signup: SignUp = signup) -> None:
                    await tx.signups.add(signup)

                await uow.run(add)
                written += 1
                largest = max(largest, os.path.getsize(wal))

        await asyncio.gather(*(writer(n) for n in range(32)))
    finally:
        await close_uow(uow)
    # ~40 MB of WAL frames in all: without the rewind the WAL holds every one of them.
    assert written == 32 * 200
    assert largest < 12 * 1024 * 1024
