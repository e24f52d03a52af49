"""Retention: pruning deletes only old published outbox rows and old processed ids, a
batch per statement, on SQLite and PostgreSQL; the status the probes read uses the
unpublished rows' index, not a scan of the table (EXPLAIN on both databases)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from signup.adapters import tables
from signup.adapters.database import create_engine
from signup.adapters.processed import SqlProcessedEvents
from signup.adapters.sql import SqlUnitOfWork
from signup.adapters.sql import statements as st
from signup.bootstrap import outbox_pruner, signup_pruner
from signup.service_layer.retention import Pruner
from signup.settings import Settings

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=10)
YOUNG = NOW - timedelta(days=1)


def clock() -> datetime:
    return NOW


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def outbox_rows(count: int, published_at: datetime | None, created_at: datetime) -> list[Any]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "user.new",
            "routing_key": "user.new",
            "payload": "{}",
            "created_at": created_at,
            "published_at": published_at,
            "attempts": 1 if published_at else 0,
        }
        for _ in range(count)
    ]


async def fill_outbox(engine: AsyncEngine, *groups: list[Any]) -> None:
    async with engine.begin() as conn:
        for rows in groups:
            await conn.execute(insert(tables.outbox), rows)


async def event_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(tables.outbox.c.event_id))).scalars())


def settings_for(database_url: str, **overrides: Any) -> Settings:
    return Settings(_env_file=None, database_url=database_url, **overrides)  # type: ignore[call-arg]


async def test_pruning_deletes_only_published_rows_past_the_retention_in_batches(
    database_url: str, engine: AsyncEngine
) -> None:
    old = outbox_rows(1_250, OLD, OLD)
    young = outbox_rows(300, YOUNG, YOUNG)
    stuck = outbox_rows(50, None, OLD)  # never published: kept however old
    await fill_outbox(engine, old, young, stuck)
    uow = SqlUnitOfWork(writer=engine, reader=engine, clock=clock)
    try:
        # One statement deletes at most its batch, oldest first.
        first = await uow.run(lambda tx: tx.outbox.prune_published(NOW - timedelta(days=7), 500))
        assert first == 500
        pruner = outbox_pruner(
            settings_for(database_url, outbox_retention_days=7, prune_pause_seconds=0), uow
        )
        assert pruner.batch == 500
        assert await pruner.prune_once() == 750
        assert pruner.statements == 2  # 500, then 250 (fewer than a batch: done)
        assert await pruner.prune_once() == 0
    finally:
        await uow.close()
    assert await event_ids(engine) == {r["event_id"] for r in young + stuck}


async def test_pruning_forgets_only_this_consumers_old_processed_ids_in_batches(
    engine: AsyncEngine,
) -> None:
    def rows(consumer: str, count: int, at: datetime) -> list[Any]:
        return [
            {"consumer": consumer, "event_id": str(uuid.uuid4()), "processed_at": at}
            for _ in range(count)
        ]

    a_old, a_young, b_old = rows("a", 400, OLD), rows("a", 100, YOUNG), rows("b", 200, OLD)
    async with engine.begin() as conn:
        await conn.execute(insert(tables.processed_events), a_old + a_young + b_old)
    processed = SqlProcessedEvents(engine)
    pruner = Pruner(
        name="processed_events",
        delete_batch=lambda before, limit: processed.prune("a", before, limit),
        clock=clock,
        retention=timedelta(days=7),
        batch=150,
        pause=0,
    )
    assert await pruner.prune_once() == 400
    assert pruner.statements == 3  # 150, 150, 100
    async with engine.connect() as conn:
        left = set((await conn.execute(select(tables.processed_events.c.event_id))).scalars())
    assert left == {r["event_id"] for r in a_young + b_old}
    for row in a_young:  # kept ids still deduplicate
        assert await processed.is_processed("a", row["event_id"])


def literal_sql(engine: AsyncEngine, statement: Any) -> str:
    return str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


async def plan(engine: AsyncEngine, statement: Any) -> str:
    sql = literal_sql(engine, statement)
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    async with engine.connect() as conn:
        rows = (await conn.execute(text(explain + sql))).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


async def test_the_status_of_the_probes_reads_the_unpublished_index_not_the_table(
    engine: AsyncEngine,
) -> None:
    await fill_outbox(engine, outbox_rows(20_000, YOUNG, YOUNG), outbox_rows(5, None, NOW))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    for statement in (st.OUTBOX_PENDING_COUNT, st.OUTBOX_OLDEST_PENDING):
        found = await plan(engine, statement)
        assert "ix_outbox_unpublished" in found, found
        assert "Seq Scan" not in found, found  # PostgreSQL: no pass over the table
        # SQLite: every access to the outbox goes through the partial index.
        for line in found.splitlines():
            if "outbox" in line and engine.dialect.name == "sqlite":
                assert "ix_outbox_unpublished" in line, found
    uow = SqlUnitOfWork(writer=engine, reader=engine, clock=clock)
    try:
        status = await uow.read(lambda tx: tx.outbox.status())
        assert (status.pending, status.published) == (5, None)
        assert status.oldest_pending_at is not None
        assert abs(status.oldest_pending_at - NOW) < timedelta(seconds=1)
        counted = await uow.read(lambda tx: tx.outbox.status(count_published=True))
        assert counted.published == 20_000
    finally:
        await uow.close()


async def prune_plan(engine: AsyncEngine, statement: Any) -> str:
    """The plan of the very statement pruning runs, with its parameters bound as pruning
    binds them (EXPLAIN of a DELETE deletes nothing on either database)."""
    compiled = statement.compile(dialect=engine.dialect)
    values = {"p_before": (NOW - timedelta(days=7)).replace(tzinfo=None), "p_limit": 500}
    every = compiled.construct_params(values)
    bound = tuple(every[name] for name in compiled.positiontup or ())
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql(explain + compiled.string, bound)).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


async def test_pruning_finds_its_rows_through_the_published_index(engine: AsyncEngine) -> None:
    await fill_outbox(engine, outbox_rows(20_000, YOUNG, YOUNG), outbox_rows(5, None, NOW))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    found = await prune_plan(engine, st.OUTBOX_PRUNE)
    assert "ix_outbox_published_at" in found, found
    assert "Seq Scan" not in found, found


def signup_rows(count: int, status: str, at: datetime) -> list[Any]:
    return [
        {
            "id": str(uuid.uuid4()),
            "email": f"{uuid.uuid4().hex[:12]}@example.com",
            "status": status,
            "provider": "auth0",
            "requested_at": at,
            "updated_at": at,
            "idempotency_key": None,
        }
        for _ in range(count)
    ]


async def test_pruning_deletes_only_settled_signups_past_the_retention(
    database_url: str, engine: AsyncEngine
) -> None:
    old_created = signup_rows(600, "created", OLD)
    old_abandoned = signup_rows(100, "abandoned", OLD)
    young = signup_rows(200, "created", YOUNG)
    old_pending = signup_rows(30, "pending", OLD)  # still waiting for its outcome: kept
    async with engine.begin() as conn:
        await conn.execute(insert(tables.signups), old_created + old_abandoned + young)
        await conn.execute(insert(tables.signups), old_pending)
    uow = SqlUnitOfWork(writer=engine, reader=engine, clock=clock)
    try:
        pruner = signup_pruner(
            settings_for(database_url, signup_retention_days=7, prune_pause_seconds=0), uow
        )
        assert await pruner.prune_once() == 700
        assert pruner.statements == 2  # 500, then 200
    finally:
        await uow.close()
    async with engine.connect() as conn:
        left = set((await conn.execute(select(tables.signups.c.id))).scalars())
    assert left == {r["id"] for r in young + old_pending}
    # The statement reads the settled sign-ups' index, not the table.
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    found = await prune_plan(engine, st.SIGNUPS_PRUNE)
    if engine.dialect.name == "sqlite":
        assert "ix_signups_settled_at" in found, found
