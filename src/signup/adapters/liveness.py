"""Which instances (processes) are still running: the `Liveness` port.

A pending sign-up records the instance whose request works on it (`signups.worked_by`).
A retry of that sign-up must tell "still being worked on" (answer 409, it will settle
soon) from "left behind by a crash" (settle it now). Each instance holds a lock named by
its id for as long as it runs; the operating system (a file lock) or the database (a
session's advisory lock) drops it when the process dies, `kill -9` included, so an
instance whose lock can be taken is gone.

- SQLite file: an `flock` on `<db>.live/<instance>`, beside the database as the writers'
  `<db>.writer-lock` is. The file is locked before it is given its name (rename), so a
  name that exists unlocked is a dead instance's; whoever finds it so removes it.
- PostgreSQL: `pg_advisory_lock` on a connection of its own, held for the instance's
  life; another session's `pg_try_advisory_xact_lock` on the same key fails while it is
  held. A lost connection drops the lock: the instance then looks dead and a retry may
  settle a sign-up it still works on. That costs nothing but the race the guarded
  settle (`WHERE status = 'pending'`) already decides: exactly one of them wins.
- Anything else (an in-memory database): one process, so only this instance is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from signup.adapters.database import sqlite_file

_INSTANCE = re.compile(r"[0-9a-f]{32}")


def new_instance() -> str:
    return uuid.uuid4().hex


class ProcessLiveness:
    """One process on its own: only this instance is alive."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or new_instance()

    async def hold(self) -> str:
        return self.instance

    async def alive(self, instance: str) -> bool:
        return instance == self.instance

    async def close(self) -> None:
        return None


class FileLiveness:
    """Instances sharing a SQLite file: an `flock` a running instance holds."""

    def __init__(self, folder: Path, instance: str | None = None) -> None:
        self.folder = folder
        self.instance = instance or new_instance()
        self._fd: int | None = None

    async def hold(self) -> str:
        if self._fd is None:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            draft = self.folder / f".{self.instance}.new"
            fd = os.open(draft, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(draft, self.folder / self.instance)
            self._fd = fd
        return self.instance

    async def alive(self, instance: str) -> bool:
        if instance == self.instance:
            return self._fd is not None
        if not _INSTANCE.fullmatch(instance):  # never a path of someone else's choosing
            return False
        path = self.folder / instance
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a dead instance's: its name is never used again
            return False
        finally:
            os.close(fd)

    async def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / self.instance).unlink()
            os.close(self._fd)
            self._fd = None


def _lock_key(instance: str) -> int:
    digest = hashlib.sha256(f"signup-instance:{instance}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgLiveness:
    """Instances sharing a PostgreSQL database: a session-level advisory lock."""

    def __init__(self, engine: AsyncEngine, instance: str | None = None) -> None:
        self.engine = engine
        self.instance = instance or new_instance()
        self._conn: AsyncConnection | None = None
        # The first sign-ups arrive together: one takes the lock, the others wait for it
        # (a second session asking for the same key would wait for the first for ever).
        self._taking = asyncio.Lock()

    async def hold(self) -> str:
        if self._conn is not None:
            return self.instance
        async with self._taking:
            if self._conn is not None:
                return self.instance
            conn = await self.engine.connect()
            try:
                # Never waits: a key already held (a 64-bit collision) takes another id.
                while not await conn.scalar(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_key(self.instance)}
                ):
                    self.instance = new_instance()
                await conn.commit()  # the lock is the session's: no transaction left open
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self.instance

    async def alive(self, instance: str) -> bool:
        if instance == self.instance:
            return self._conn is not None
        async with self.engine.connect() as conn:
            # Released with the transaction, which ends with this block.
            free = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _lock_key(instance)}
            )
        return not free

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                # Unlocked before the connection goes back to the pool, whose reset on
                # return need not end the session's locks.
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(self.instance)}
                )
                await conn.commit()
            with contextlib.suppress(Exception):
                await conn.close()


def build_liveness(
    database_url: str, engine: AsyncEngine
) -> ProcessLiveness | FileLiveness | PgLiveness:
    if make_url(database_url).get_backend_name() == "postgresql":
        return PgLiveness(engine)
    if (path := sqlite_file(database_url)) is not None:
        return FileLiveness(Path(f"{path}.live"))
    return ProcessLiveness()
