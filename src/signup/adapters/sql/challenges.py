"""The proof-of-work solutions already used, in the service's database (`spent_challenges`).

Run as works of the unit of work (`SqlTransaction.challenges`), so that on SQLite a
solution's record takes a turn of the group commit among the sign-ups' writes instead of
a writer of its own. A replay never fails its batch: the row is looked for first (inside
the batch's transaction, where SQLite's single writer orders them), and only a new one
is inserted. On PostgreSQL two processes inserting the same solution at once: the second
fails its batch with a unique violation, is re-run alone and finds the first's row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from signup.adapters import tables as t
from signup.adapters.sql.sqlite_fast import InlineConnection
from signup.adapters.sql.statements import oldest_first_batch

_c = t.spent_challenges.c
OWNER_OF = select(_c.owner).where(_c.id == bindparam("p_id"))
SPEND = insert(t.spent_challenges)
# Expired records, a batch at a time (ix_spent_challenges_expires_at).
PRUNE = oldest_first_batch(t.spent_challenges, _c.id, _c.expires_at)


class SqlSpentChallenges:
    def __init__(self, conn: AsyncConnection | InlineConnection) -> None:
        self._conn = conn

    async def spend(self, solution_id: str, owner: str, expires_at: datetime) -> bool:
        found = (await self._conn.execute(OWNER_OF, {"p_id": solution_id})).first()
        if found is not None:
            return bool(found.owner == owner)
        await self._conn.execute(
            SPEND, {"id": solution_id, "owner": owner, "expires_at": expires_at}
        )
        return True

    async def prune_expired(self, before: datetime, limit: int) -> int:
        result = await self._conn.execute(PRUNE, {"p_before": before, "p_limit": limit})
        return int(result.rowcount)
