"""Retention: delete rows past their keeping time a batch at a time, off the hot path.

Published outbox rows (beside the relay) and processed event ids (in each worker) would
otherwise pile up for ever. Each pass fixes its cut-off, then deletes `batch` rows per
statement with `pause` between statements until a statement finds fewer than `batch`:
every statement is one short transaction (on SQLite a turn of the group commit among
the sign-ups'), so no lock is held for long and sign-ups keep their pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

log = structlog.get_logger(__name__)

# Deletes up to `limit` rows older than the given time; answers how many it deleted.
DeleteBatch = Callable[[datetime, int], Awaitable[int]]


@dataclass
class Pruner:
    name: str
    delete_batch: DeleteBatch
    clock: Callable[[], datetime]
    retention: timedelta
    batch: int = 500
    pause: float = 0.05
    every: float = 300.0
    statements: int = field(default=0, init=False)
    deleted: int = field(default=0, init=False)

    async def prune_once(self, stop: asyncio.Event | None = None) -> int:
        """One pass: everything older than the retention as this pass starts."""
        before = self.clock() - self.retention
        total = 0
        while True:
            count = await self.delete_batch(before, self.batch)
            self.statements += 1
            total += count
            if count < self.batch or (stop is not None and stop.is_set()):
                break
            await _wait(stop, self.pause)
        self.deleted += total
        if total:
            log.info("retention.pruned", table=self.name, rows=total, before=before.isoformat())
        return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.prune_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next pass tries again
                log.warning("retention.failed", table=self.name, error=str(exc)[:300])
            await _wait(stop, self.every)


async def _wait(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
