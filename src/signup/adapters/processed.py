"""Which events each consumer has already acted on (table `processed_events`).

A consumer checks `is_processed` before its side effect and calls `mark_processed`
after it succeeded; redelivered or replayed events with a known id are skipped.
The insert is "insert if absent" in one statement on SQLite and PostgreSQL, so two
workers finishing the same event at once both succeed and one row remains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import and_, bindparam, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from signup.adapters.tables import processed_events

_p = processed_events.c
# One consumer's ids recorded before the cut-off, oldest first, a batch at a time
# (ix_processed_events_processed_at); deleted by their primary key.
PRUNE = delete(processed_events).where(
    _p.consumer == bindparam("p_consumer"),
    _p.event_id.in_(
        select(_p.event_id)
        .where(_p.consumer == bindparam("p_consumer"), _p.processed_at < bindparam("p_before"))
        .order_by(_p.processed_at)
        .limit(bindparam("p_limit"))
    ),
)


class ProcessedEvents(Protocol):
    """The port: per consumer, the set of event ids whose side effect is done."""

    async def is_processed(self, consumer: str, event_id: str) -> bool: ...

    async def mark_processed(self, consumer: str, event_id: str) -> bool:
        """Record the id; True when it was new, False when it was already there."""
        ...


class SqlProcessedEvents:
    """`ProcessedEvents` on the service's database (SQLAlchemy Core)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def _insert(self, consumer: str, event_id: str) -> Insert:
        values = {
            "consumer": consumer,
            "event_id": event_id,
            "processed_at": datetime.now(UTC),
        }
        keys = [processed_events.c.consumer, processed_events.c.event_id]
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            return (
                sqlite.insert(processed_events)
                .values(values)
                .on_conflict_do_nothing(index_elements=keys)
            )
        if dialect == "postgresql":
            return (
                postgresql.insert(processed_events)
                .values(values)
                .on_conflict_do_nothing(index_elements=keys)
            )
        return processed_events.insert().values(values)

    async def is_processed(self, consumer: str, event_id: str) -> bool:
        query = select(
            exists().where(
                and_(
                    processed_events.c.consumer == consumer,
                    processed_events.c.event_id == event_id,
                )
            )
        )
        async with self._engine.connect() as connection:
            return bool(await connection.scalar(query))

    async def mark_processed(self, consumer: str, event_id: str) -> bool:
        try:
            async with self._engine.begin() as connection:
                result = await connection.execute(self._insert(consumer, event_id))
        except IntegrityError:  # another dialect without ON CONFLICT: already there
            return False
        return result.rowcount == 1

    async def forget(self, consumer: str, event_id: str) -> bool:
        """Drop the record so the event may be acted on again (operator use)."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(processed_events).where(
                    and_(
                        processed_events.c.consumer == consumer,
                        processed_events.c.event_id == event_id,
                    )
                )
            )
        return result.rowcount == 1

    async def prune(self, consumer: str, before: datetime, limit: int) -> int:
        """Forget up to `limit` of this consumer's ids recorded before `before`.

        Past the retention an id is not looked for any more: the outbox keeps events
        for less time than this, so a replay cannot send one back after its id is gone
        (SIGNUP_OUTBOX_RETENTION_DAYS < SIGNUP_PROCESSED_RETENTION_DAYS).
        """
        params = {"p_consumer": consumer, "p_before": before, "p_limit": limit}
        async with self._engine.begin() as connection:
            result = await connection.execute(PRUNE, params)
        return int(result.rowcount)
