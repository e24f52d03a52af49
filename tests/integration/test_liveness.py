"""The liveness locks on a real SQLite file and a real PostgreSQL: an instance is alive while
its process runs, and dead once it is killed (`kill -9`: nothing of its own runs at exit)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from signup.adapters.liveness import FileLiveness, PgLiveness, build_liveness

HOLDER = """
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from signup.adapters.liveness import build_liveness

async def main() -> None:
    url = sys.argv[1]
    live = build_liveness(url, create_async_engine(url))
    print(await live.hold(), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(database_url)
    yield made
    await made.dispose()


async def until_dead(live: FileLiveness | PgLiveness, instance: str) -> None:
    deadline = time.monotonic() + 10
    while await live.alive(instance):
        assert time.monotonic() < deadline, "a killed instance still looks alive after 10 s"
        await asyncio.sleep(0.05)


async def test_an_instance_is_alive_while_its_process_runs_and_dead_once_killed(
    database_url: str, engine: AsyncEngine
) -> None:
    live = build_liveness(database_url, engine)
    assert isinstance(live, FileLiveness | PgLiveness)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        instance = (await asyncio.to_thread(child.stdout.readline)).strip()
        assert instance, "the holder printed no instance id"
        assert await live.alive(instance)
        assert await live.alive(instance), "asking must not take the lock away"
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.to_thread(child.wait, 10)
        await until_dead(live, instance)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    await live.close()


async def test_its_own_instance_and_a_closed_one(database_url: str, engine: AsyncEngine) -> None:
    mine = build_liveness(database_url, engine)
    other = build_liveness(database_url, engine)
    assert isinstance(mine, FileLiveness | PgLiveness)
    assert isinstance(other, FileLiveness | PgLiveness)
    instance = await mine.hold()
    assert await mine.hold() == instance
    assert await mine.alive(instance)
    assert await other.alive(instance), "seen from another holder (another process's view)"
    assert not await other.alive("0" * 32), "never held"
    assert not await other.alive("../../etc/passwd")
    await mine.close()
    await until_dead(other, instance)
    await other.close()


async def test_sign_ups_arriving_together_take_one_lock(
    database_url: str, engine: AsyncEngine
) -> None:
    live = build_liveness(database_url, engine)
    other = build_liveness(database_url, engine)
    assert isinstance(live, FileLiveness | PgLiveness)
    assert isinstance(other, FileLiveness | PgLiveness)
    held = await asyncio.wait_for(asyncio.gather(*(live.hold() for _ in range(32))), 10)
    assert len(set(held)) == 1
    assert await other.alive(held[0])
    await live.close()
    await other.close()
