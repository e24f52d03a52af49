"""The hour between two owner notices, kept in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from signup.bootstrap import bootstrap
from signup.settings import Settings

KEY = "a" * 64
HOUR = timedelta(hours=1)
T0 = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


async def test_a_notice_is_claimed_once_an_hour_and_pruned_later(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    container = bootstrap(make_settings(database_url=database_url))
    uow = container.uow

    async def claim(at: datetime, key: str = KEY) -> bool:
        return await uow.run(lambda tx: tx.attempt_notices.claim(key, at, at - HOUR))

    try:
        assert await claim(T0)
        assert not await claim(T0 + timedelta(minutes=59))
        assert await claim(T0 + timedelta(minutes=1), key="b" * 64), "other addresses are apart"
        later = T0 + timedelta(minutes=61)
        claims = await asyncio.gather(*(claim(later) for _ in range(5)))
        assert claims.count(True) == 1, claims
        assert await uow.read(lambda tx: tx.attempt_notices.sent_after(KEY, later - HOUR))
        assert not await uow.read(lambda tx: tx.attempt_notices.sent_after(KEY, later))
        pruned = await uow.run(lambda tx: tx.attempt_notices.prune(T0 + 2 * HOUR, 10))
        assert pruned == 2  # both records are older than that; nothing else is there
        assert await claim(T0 + 2 * HOUR)
    finally:
        await container.aclose()
