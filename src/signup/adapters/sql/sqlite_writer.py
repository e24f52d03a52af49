"""The SQLite writer of the group commit: each batch runs start to commit in a callback
of the event loop, writers of every process take turns through `flock` on a lock file,
and the WAL is copied back beside the writer, never inside a commit.

Why each of these, and what was measured: docs/decisions/0004-sqlite-writer-on-the-loop.md
(the loop, `flock`, the checkpointer) and docs/decisions/0005-wal-bounded.md (the WAL's
bound). A writer process was tried and not kept: docs/decisions/0006-writer-process-not-kept.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine

from signup.adapters.database import SQLITE_BUSY_TIMEOUT_MS
from signup.adapters.sql.batches import BatchSettings, Committed, Job, Outcome, deliver
from signup.adapters.sql.repositories import SqlTransaction
from signup.adapters.sql.sqlite_fast import InlineConnection, Plans, run_inline
from signup.service_layer.ports import OutboxEntry

log = structlog.get_logger(__name__)


class SqliteSettings(BatchSettings, Protocol):
    """The SQLite writer's knobs, read from its unit of work (see `SqlUnitOfWork`)."""

    @property
    def flush_gap(self) -> float: ...

    @property
    def checkpoint_every(self) -> float: ...

    @property
    def wal_limit_bytes(self) -> int: ...


def writer_lock_path(database: str) -> str:
    return f"{database}.writer-lock"


def checkpoint(database: str, rewind_above: int) -> None:
    """Copy the WAL back into the database (PASSIVE); past `rewind_above` bytes, once
    more with every writer waiting, so that the next commit rewinds the WAL.

    SQLite rewinds the WAL (writes from its start again) only when a commit finds all of
    it copied back. A PASSIVE checkpoint beside writers that never pause ends with the
    frames they appended meanwhile still to copy, so under sustained load the WAL never
    rewound and grew without bound (docs/decisions/0005-wal-bounded.md). The second pass
    copies only what came during the first; the writers wait for it (its copy and the
    database's fsync, a few milliseconds) on the lock they take turns with, in a thread
    of theirs, never on the event loop.
    """
    conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        if pages * page_size > rewind_above:
            # A descriptor of its own, not the writer's: `flock` excludes other open
            # files only, so on the writer's own descriptor it would not wait.
            lock = os.open(writer_lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                os.close(lock)  # and with it the lock
    except sqlite3.Error as exc:  # e.g. another process's checkpoint is running
        log.debug("uow.checkpoint_skipped", reason=str(exc))
    finally:
        conn.close()


class SqliteWriter:
    """Group commit on one SQLite file (docs/decisions/0001-group-commit.md).

    Every work submitted before the loop comes round to the flush shares its transaction
    and its commit; the first work that finds no flush scheduled schedules one, at least
    `flush_gap` after the previous one started. If any work in a batch fails, the batch is
    rolled back and each work re-run in its own transaction, so one failure never takes
    its neighbours with it.
    """

    def __init__(self, engine: Engine, settings: SqliteSettings) -> None:
        self._engine = engine
        self._settings = settings
        self.batches = 0  # committed
        # Work waiting for the next flush, and whether one is scheduled (or waiting for
        # another process's transaction to end).
        self._pending: list[Job] = []
        self._flush_due = False
        self._last_flush = 0.0
        self._lock_waiter: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._plans: Plans = {}
        self._lock_fd: int | None = None
        self._conn: Connection | None = None

    @property
    def idle(self) -> bool:
        return not self._pending and not self._flush_due

    def submit(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpointer is None:
            self._checkpointer = asyncio.create_task(
                self._checkpoint_forever(str(self._engine.url.database)), name="uow-checkpoint"
            )
        self._pending.append(job)
        if not self._flush_due:
            self._flush_due = True
            wait = self._last_flush + self._settings.flush_gap - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)

    async def close(self) -> None:
        if self._lock_waiter is not None:
            self._lock_waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lock_waiter
            self._lock_waiter = None
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _flush(self) -> None:
        """Run the pending work, start to commit, in this callback of the loop."""
        if self._try_lock_file():
            self._flush_locked()
        else:  # another process is writing: wait for it in a thread, not on the loop
            self._lock_waiter = asyncio.create_task(self._flush_when_locked(), name="uow-lock")

    async def _flush_when_locked(self) -> None:
        try:
            await self._wait_lock_file()
        except BaseException as exc:
            self._flush_due = False
            jobs, self._pending = self._pending, []
            failure = RuntimeError(f"the writer stopped waiting for the file: {exc!r}")
            self._deliver(jobs, [(False, failure)] * len(jobs), [])
            raise
        self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = asyncio.get_running_loop().time()
        size = self._settings.max_batch
        jobs, self._pending = self._pending[:size], self._pending[size:]
        try:
            outcomes, written = self._commit(jobs)
        except Exception as exc:  # e.g. the file cannot be opened: fail, never leave waiting
            outcomes, written = [(False, exc)] * len(jobs), []
        finally:
            self._unlock_file()
            self._flush_due = False
        # Only now is any caller answered: with synchronous=FULL the commit returned
        # after the WAL's sync, so the provider call or the 201 that follows is never
        # ahead of the disk (tests/faults/test_power_loss_order.py).
        self._deliver(jobs, outcomes, written)
        if self._pending:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _deliver(
        self, jobs: list[Job], outcomes: list[Outcome], written: list[OutboxEntry]
    ) -> None:
        deliver(jobs, outcomes, written, self._settings.on_outbox_written)

    def _commit(self, jobs: list[Job]) -> Committed:
        """The batch in one transaction (on the event loop); on failure, each alone."""
        conn = self._connection()
        try:
            transaction = conn.begin()
        except Exception as exc:  # e.g. the write lock not had within the busy timeout
            # Every work fails at once: run alone, each would wait the busy timeout again,
            # on the event loop. The connection goes, and with it whatever state the
            # failed BEGIN left on it; the next batch takes it afresh from the pool.
            self._drop_connection()
            return [(False, exc)] * len(jobs), []
        try:
            with transaction:
                tx = SqlTransaction(InlineConnection(conn, self._plans), self._settings.clock)
                results = [run_inline(job.work(tx)) for job in jobs]
        except Exception as exc:
            if conn.in_transaction() or conn.invalidated:
                self._drop_connection()  # never a transaction left open on it
            if len(jobs) == 1:
                return [(False, exc)], []
            outcomes: list[Outcome] = []
            written: list[OutboxEntry] = []
            for job in jobs:
                alone, wrote = self._commit([job])
                outcomes += alone
                written += wrote
            return outcomes, written
        self.batches += 1
        return [(True, result) for result in results], tx.outbox_entries

    def _connection(self) -> Connection:
        """The writer's one connection, kept: taking it from the pool and handing it back
        (with its reset) for every batch cost more than a small batch's statements
        (docs/decisions/0002-sqlite-fast-path.md)."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self._engine.connect()
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA journal_size_limit={int(self._settings.wal_limit_bytes)}")
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()  # back to the pool, which rolls back whatever is open

    async def _checkpoint_forever(self, database: str) -> None:
        """Copy the WAL back into the database file beside the writer, never inside it.

        SQLite's own checkpoint runs inside whichever commit crosses 1,000 pages, with
        its fsyncs, while that commit holds the write lock, and stops every writer for as
        long (docs/decisions/0004-sqlite-writer-on-the-loop.md). The writer's connection
        has it turned off (`create_sqlite_writer`); this task runs a PASSIVE checkpoint,
        which never waits for or blocks a writer, in a thread (SQLite lets go of the
        interpreter lock while it works).
        """
        done = self.batches
        while True:
            await asyncio.sleep(self._settings.checkpoint_every)
            if self.batches != done:
                done = self.batches
                # Shielded: a checkpoint under way finishes even if this task is
                # cancelled (its connection is its own and closes with it).
                limit = self._settings.wal_limit_bytes
                await asyncio.shield(asyncio.to_thread(checkpoint, database, limit))

    def _try_lock_file(self) -> bool:
        """Writers of every process on this file take turns through a lock file.

        SQLite makes a writer that finds the file locked sleep and try again, with
        growing pauses: with the web app and a relay process writing to the same file,
        those sleeps stalled whole batches. Waiting on `flock` instead wakes the next
        writer the moment the lock is let go; the wait itself happens in a thread
        (`_wait_lock_file`), so the event loop never stops for another process
        (docs/decisions/0004-sqlite-writer-on-the-loop.md).
        """
        if self._lock_fd is None:
            path = writer_lock_path(str(self._engine.url.database))
            self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def _wait_lock_file(self) -> None:
        assert self._lock_fd is not None
        await asyncio.to_thread(fcntl.flock, self._lock_fd, fcntl.LOCK_EX)

    def _unlock_file(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
