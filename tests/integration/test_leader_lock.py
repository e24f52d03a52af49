"""The relay's leadership on a SQLite file dies with the process that holds it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from signup.adapters.database import create_engine
from signup.adapters.leader_lock import FileLeaderLock
from signup.adapters.sql import SqlUnitOfWork
from signup.service_layer.relay import Relay
from signup.testing.clock import ManualClock as ManualTimers
from signup.testing.fakes import FakePublisher

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def now() -> datetime:
    return datetime.now(UTC)


def test_the_lock_is_free_the_moment_its_holder_is_killed(tmp_path: Path) -> None:
    path = str(tmp_path / "signup.db.relay-lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        lock = FileLeaderLock(path)
        assert not lock.acquire(), "another process holds it"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert lock.acquire(), "free once its holder is dead: no lease to wait out"
        assert lock.acquire(), "and still ours"
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_the_lock_lives_beside_a_sqlite_file_only() -> None:
    lock = FileLeaderLock.for_database("sqlite+aiosqlite:////srv/signup/signup.db")
    assert lock is not None and lock.path == "/srv/signup/signup.db.relay-lock"
    assert FileLeaderLock.for_database("sqlite+aiosqlite:///:memory:") is None
    assert FileLeaderLock.for_database("postgresql+asyncpg://u@h/db") is None


async def test_a_standing_by_relay_takes_over_at_its_next_poll(sqlite_url: str) -> None:
    writer, reader = create_engine(sqlite_url, writer=True), create_engine(sqlite_url)
    uow = SqlUnitOfWork(writer=writer, reader=reader, clock=now)
    lock_path = FileLeaderLock.for_database(sqlite_url)
    assert lock_path is not None
    timers = ManualTimers()

    def relay(name: str) -> Relay:
        return Relay(
            uow=uow,
            publisher=FakePublisher(),
            clock=now,
            exclusive=True,
            holder=name,
            poll_seconds=1.0,
            lease_seconds=3600,  # a lease row would keep the second waiting for an hour
            leader_lock=FileLeaderLock(lock_path.path),
            timers=timers,
        )

    first, second = relay("first"), relay("second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    one = asyncio.create_task(first.run(stop_first))
    try:
        async with asyncio.timeout(10):
            while not first.leading:
                await asyncio.sleep(0.01)
            two = asyncio.create_task(second.run(stop_second))
            await asyncio.sleep(0.1)
            assert first.leading and not second.leading
            stop_first.set()
            await one
            while not second.leading:
                timers.advance(1.0)  # its poll period
                await asyncio.sleep(0.01)
        stop_second.set()
        await two
    finally:
        stop_first.set()
        stop_second.set()
        await uow.close()
        await writer.dispose()
        await reader.dispose()
