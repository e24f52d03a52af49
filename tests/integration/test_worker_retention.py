"""A running worker forgets its own processed ids past SIGNUP_PROCESSED_RETENTION_DAYS
(and no other consumer's), as `signup worker` wires it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from worker_fixtures import Broker, broker, sqlite_url, wait_for

from signup.adapters import tables
from signup.adapters.database import create_engine
from signup.bootstrap import build_consumer
from signup.service_layer.consumers import CRM_SYNC, WELCOME_EMAIL

__all__ = ["broker", "sqlite_url"]  # fixtures


async def test_a_running_worker_prunes_its_old_processed_ids(
    broker: Broker, sqlite_url: str
) -> None:
    now = datetime.now(UTC)
    engine = create_engine(sqlite_url)
    rows = [
        {"consumer": consumer, "event_id": str(uuid.uuid4()), "processed_at": at}
        for consumer, at, count in (
            (CRM_SYNC, now - timedelta(days=40), 1_200),
            (CRM_SYNC, now, 10),  # young: kept
            (WELCOME_EMAIL, now - timedelta(days=40), 10),  # another consumer's: kept
        )
        for _ in range(count)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(tables.processed_events), rows)
    settings = broker.settings(
        database_url=sqlite_url,
        crm_url="http://127.0.0.1:9/hook",
        crm_secret="whsec_" + "a" * 32,
        prune_pause_seconds=0,
    )
    assert settings.processed_retention_days == 30
    left: list[int] = []

    async def count() -> None:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(tables.processed_events)
            left.append(int((await conn.execute(query)).scalar_one()))

    broker.topology(CRM_SYNC)
    stop = asyncio.Event()
    async with build_consumer(CRM_SYNC, settings, prefix=broker.prefix) as consumer:
        assert consumer.pruner is not None and consumer.pruner.batch == 500
        task = asyncio.create_task(consumer.run(stop))
        try:

            def pruned() -> bool:
                return consumer.pruner is not None and consumer.pruner.deleted == 1_200

            await wait_for(pruned, what="the old ids pruned")
            assert consumer.pruner.statements == 3  # 500, 500, 200
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task
    await count()
    await engine.dispose()
    assert left == [20]
