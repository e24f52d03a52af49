"""Another process holds the SQLite file's write lock past the busy timeout (a worker
recording its processed ids on the same file, an operator's `sqlite3` shell): the
sign-ups it affects are answered 503 with Retry-After, never 500, and once the lock is
let go the next sign-up succeeds (the writer's connection is left clean)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import aiohttp
import orjson
import pytest

from signup.adapters import database
from signup.adapters.database import create_engine, migrate, sqlite_file
from signup.adapters.processed import SqlProcessedEvents
from signup.settings import Settings
from signup.testing.server import serving

PASSWORD = "violet tractor anthem"
# Short, so that the lock below outlasts it in well under a second.
BUSY_TIMEOUT_MS = 200


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@contextmanager
def write_locked(path: str, seconds: float = 30) -> Iterator[None]:
    """Hold the file's write lock from a connection of another thread until exit (or
    `seconds`), as another process's open write transaction would."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            release.wait(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    holder = threading.Thread(target=hold, name="write-lock-holder")
    holder.start()
    try:
        assert taken.wait(10), "the lock was not taken"
        yield
    finally:
        release.set()
        holder.join(10)


async def sign_up(http: aiohttp.ClientSession, url: str, email: str) -> tuple[int, dict, dict]:  # type: ignore[type-arg]
    body = {"email": email, "password": PASSWORD, "given_name": "Ada", "family_name": "L"}
    async with http.post(
        f"{url}/user/signup",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def test_a_locked_file_answers_503_and_the_next_sign_up_succeeds(
    short_busy_timeout: None,
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    http: aiohttp.ClientSession,
) -> None:
    path = sqlite_file(sqlite_url)
    assert path is not None
    async with serving(make_settings()) as url:
        status, answer, _ = await sign_up(http, url, "first@example.com")
        assert status == 201, answer  # the writer's connection is open and warm
        with write_locked(path):
            answers = await asyncio.gather(
                *(sign_up(http, url, f"locked{i}@example.com") for i in range(3))
            )
        for status, answer, headers in answers:
            assert status == 503, answer
            assert headers["Content-Type"].startswith("application/problem+json")
            assert int(headers["Retry-After"]) >= 1
        for i in range(3):
            status, answer, _ = await sign_up(http, url, f"after{i}@example.com")
            assert status == 201, answer
        # What was refused may be sent again and succeeds.
        status, answer, _ = await sign_up(http, url, "locked0@example.com")
        assert status == 201, answer


async def test_the_worker_waits_for_the_lock_within_the_busy_timeout(
    short_busy_timeout: None, sqlite_url: str
) -> None:
    """The worker's processed ids (`signup worker`'s engine, as bootstrap builds it) wait
    for another writer within the busy timeout rather than failing at once."""
    path = sqlite_file(sqlite_url)
    assert path is not None
    await asyncio.to_thread(migrate, sqlite_url)
    engine = create_engine(sqlite_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert timeout == BUSY_TIMEOUT_MS
        processed = SqlProcessedEvents(engine)
        with write_locked(path, seconds=BUSY_TIMEOUT_MS / 1000 / 4):
            assert await processed.mark_processed("welcome-email", "event-1")
        assert await processed.is_processed("welcome-email", "event-1")
    finally:
        await engine.dispose()


async def test_a_lock_taken_again_and_again_meets_only_201_and_503(
    short_busy_timeout: None,
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    http: aiohttp.ClientSession,
) -> None:
    """Another writer holds the lock a little longer than the busy timeout, over and
    over, while sign-ups pour in: each is answered 201 or 503, none 500 and none cut off
    (before the fix each work of a failed batch waited the busy timeout again, on the
    event loop, and the server dropped connections), and afterwards all succeed."""
    path = sqlite_file(sqlite_url)
    assert path is not None
    stop = threading.Event()

    def flap() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                time.sleep(BUSY_TIMEOUT_MS / 1000 * 1.2)
                conn.execute("ROLLBACK")
                time.sleep(0.03)
        finally:
            conn.close()

    async with serving(make_settings()) as url:
        holder = threading.Thread(target=flap, name="lock-flapper")
        holder.start()
        try:
            answers = await asyncio.gather(
                *(sign_up(http, url, f"flap{i}@example.com") for i in range(150))
            )
        finally:
            stop.set()
            holder.join(10)
        assert {status for status, _, _ in answers} <= {201, 503}, answers
        for i in range(3):
            status, answer, _ = await sign_up(http, url, f"calm{i}@example.com")
            assert status == 201, answer
