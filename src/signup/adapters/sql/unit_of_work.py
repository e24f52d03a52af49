"""The unit of work on SQL: concurrent works share one transaction and its commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from signup.adapters.sql.async_writer import AsyncWriter
from signup.adapters.sql.batches import Job
from signup.adapters.sql.repositories import SqlTransaction
from signup.adapters.sql.sqlite_fast import InlineConnection, run_inline
from signup.adapters.sql.sqlite_writer import SqliteWriter
from signup.service_layer.ports import OutboxEntry
from signup.service_layer.unit_of_work import Work

T = TypeVar("T")


@dataclass
class SqlUnitOfWork:
    """Commits many concurrent units of work in one transaction (group commit).

    Whatever work is waiting runs in a single transaction that commits once, so under
    load a commit (and its fsync) is shared by many sign-ups
    (docs/decisions/0001-group-commit.md). On a SQLite file the batch is a callback of the
    event loop (`SqliteWriter`); otherwise one writer task takes the batches
    (`AsyncWriter`). If any work in a batch fails, the batch is rolled back and each work
    re-run in its own transaction: a work may run more than once.

    The knobs are read as each batch runs, so they may be set after construction (before
    the first work, as `bootstrap` and the tests do).
    """

    writer: AsyncEngine
    reader: AsyncEngine
    clock: Callable[[], datetime]
    max_batch: int = 256
    # Told of the outbox rows each commit wrote, right after it (the relay,
    # docs/decisions/0008-relay-in-the-web-process.md).
    on_outbox_written: Callable[[list[OutboxEntry]], None] | None = None
    # SQLite: a plain engine on the same file. Each batch then runs start to commit on
    # the event loop itself, a few milliseconds at most, where through aiosqlite or a
    # writer thread the hand-overs, not the CPU, set the pace
    # (docs/decisions/0004-sqlite-writer-on-the-loop.md).
    inline_writer: Engine | None = None
    # SQLite: a plain engine for `read(..., quick=True)` on the loop.
    inline_reader: Engine | None = None
    checkpoint_every: float = 0.5
    # SQLite: past this size the WAL is made to rewind (see `sqlite_writer.checkpoint`),
    # and a WAL that grew beyond it is cut back to it when it rewinds
    # (docs/decisions/0005-wal-bounded.md).
    wal_limit_bytes: int = 64 * 1024 * 1024
    # SQLite: at least this long between two commits' starts. At moderate load works
    # arrive one by one, and a commit each cost more than the works themselves; under
    # full load the loop's turns are longer than this (docs/decisions/0001-group-commit.md).
    flush_gap: float = 0.001
    _sqlite: SqliteWriter | None = field(default=None, init=False)
    _async: AsyncWriter | None = field(default=None, init=False)

    @property
    def batches(self) -> int:
        """Transactions committed so far (a batch that failed counts none)."""
        return sum(w.batches for w in (self._sqlite, self._async) if w is not None)

    async def run(self, work: Work[T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = Job(work, future)
        if self.inline_writer is not None:
            if self._sqlite is None:
                self._sqlite = SqliteWriter(self.inline_writer, self)
            self._sqlite.submit(job)
        else:
            if self._async is None:
                self._async = AsyncWriter(self.writer, self)
            self._async.submit(job)
        return await future

    async def read(self, work: Work[T], *, quick: bool = False) -> T:
        if quick and self.inline_reader is not None:
            # On the event loop: an indexed read on SQLite takes microseconds, a trip
            # through aiosqlite's thread and back costs far more
            # (docs/decisions/0002-sqlite-fast-path.md).
            with self.inline_reader.connect() as sync_conn:
                return run_inline(work(SqlTransaction(InlineConnection(sync_conn), self.clock)))
        async with self.reader.connect() as conn:
            return await work(SqlTransaction(conn, self.clock))

    async def close(self) -> None:
        await self._drained()
        for writer in (self._sqlite, self._async):
            if writer is not None:
                await writer.close()
        for engine in (self.inline_writer, self.inline_reader):
            if engine is not None:
                engine.dispose()

    async def _drained(self) -> None:
        """Wait (about 5 s at most) for work already accepted, by either writer."""
        for _ in range(500):
            if all(w is None or w.idle for w in (self._sqlite, self._async)):
                return
            await asyncio.sleep(0.01)
