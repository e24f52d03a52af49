"""When each address's owner was last told of a sign-up attempt (`attempt_notices`).

The hour between two notices is kept here, in the transaction that writes the notice's
outbox row, so it holds across web processes and restarts. Addresses are keyed by a
SHA-256 of their case-folded form: the table holds no address.

Two processes claiming at once: on SQLite the single writer orders them; on PostgreSQL
the conditional update waits for the other's row and then finds it recent, and two
inserts of a new key fail the second batch with a unique violation, which is re-run
alone and finds the first's row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from signup.adapters import tables as t
from signup.adapters.sql.sqlite_fast import InlineConnection
from signup.adapters.sql.statements import oldest_first_batch

_c = t.attempt_notices.c
SENT_AT = select(_c.sent_at).where(_c.email_sha256 == bindparam("p_key"))
RENEW = (
    update(t.attempt_notices)
    .where(_c.email_sha256 == bindparam("p_key"), _c.sent_at <= bindparam("p_since"))
    .values(sent_at=bindparam("p_now"))
)
ADD = insert(t.attempt_notices)
# Notices past the hour, a batch at a time (ix_attempt_notices_sent_at).
PRUNE = oldest_first_batch(t.attempt_notices, _c.email_sha256, _c.sent_at)


class SqlAttemptNotices:
    def __init__(self, conn: AsyncConnection | InlineConnection) -> None:
        self._conn = conn

    async def sent_after(self, key: str, since: datetime) -> bool:
        row = (await self._conn.execute(SENT_AT, {"p_key": key})).first()
        return row is not None and row.sent_at > since

    async def claim(self, key: str, now: datetime, since: datetime) -> bool:
        renewed = await self._conn.execute(RENEW, {"p_key": key, "p_since": since, "p_now": now})
        if renewed.rowcount:
            return True
        if (await self._conn.execute(SENT_AT, {"p_key": key})).first() is not None:
            return False  # one was sent after `since`
        await self._conn.execute(ADD, {"email_sha256": key, "sent_at": now})
        return True

    async def prune(self, before: datetime, limit: int) -> int:
        result = await self._conn.execute(PRUNE, {"p_before": before, "p_limit": limit})
        return int(result.rowcount)
