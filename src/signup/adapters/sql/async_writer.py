"""The group commit's writer on SQLAlchemy's asyncio engine: PostgreSQL's (asyncpg), and
SQLite's where no plain engine can be had (in memory). One task takes whatever work is
waiting and commits it once (docs/decisions/0001-group-commit.md)."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncEngine

from signup.adapters.sql.batches import BatchSettings, Committed, Job, Outcome, deliver
from signup.adapters.sql.repositories import SqlTransaction
from signup.service_layer.ports import OutboxEntry


class AsyncWriter:
    """If any work in a batch fails, the batch is rolled back and each work re-run in its
    own transaction, so one failure never takes its neighbours with it."""

    def __init__(self, engine: AsyncEngine, settings: BatchSettings) -> None:
        self._engine = engine
        self._settings = settings
        self.batches = 0  # committed
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._committing = False

    @property
    def idle(self) -> bool:
        return (self._queue is None or self._queue.empty()) and not self._committing

    def submit(self, job: Job) -> None:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._write_forever(self._queue), name="uow-writer")
        self._queue.put_nowait(job)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _write_forever(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < self._settings.max_batch and not queue.empty():
                jobs.append(queue.get_nowait())
            self._committing = True
            try:
                outcomes, written = await self._commit(jobs)
            finally:
                self._committing = False
            deliver(jobs, outcomes, written, self._settings.on_outbox_written)

    async def _commit(self, jobs: list[Job]) -> Committed:
        """The batch in one transaction; on failure, each alone."""
        try:
            async with self._engine.begin() as conn:
                tx = SqlTransaction(conn, self._settings.clock)
                results = [await job.work(tx) for job in jobs]
        except Exception as exc:
            if len(jobs) == 1:
                return [(False, exc)], []
            outcomes: list[Outcome] = []
            written: list[OutboxEntry] = []
            for job in jobs:
                alone, wrote = await self._commit([job])
                outcomes += alone
                written += wrote
            return outcomes, written
        self.batches += 1
        return [(True, result) for result in results], tx.outbox_entries
