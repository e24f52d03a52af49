"""Waking the relay on another process's commit to a SQLite file.

The relay in the web process is told of its own process's commits by the unit of work
(`on_outbox_written`); a relay apart (`signup relay`), or the web workers' relays
beside each other, learn of the others' commits here, by `PRAGMA data_version`
(docs/decisions/0008-relay-in-the-web-process.md). Elsewhere (PostgreSQL) the relay
polls at `SIGNUP_RELAY_POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import make_url

from signup.adapters.database import SQLITE_BUSY_TIMEOUT_MS, watchable


class Wakeable(Protocol):
    """What is woken (the relay): `wake()` is called from the event loop."""

    def wake(self) -> None: ...


class CommitWatch:
    """Tells when another connection committed to a SQLite file (`PRAGMA data_version`).

    A relay in a process of its own learns of new outbox rows this way within a few
    milliseconds, without a write transaction or a query on the outbox per look: the
    pragma reads a counter in the shared WAL index.
    """

    def __init__(self, url: str) -> None:
        if not watchable(url):
            raise ValueError("a commit watch needs a SQLite file")
        self._conn = sqlite3.connect(
            str(make_url(url).database), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        self._seen = self._version()

    def _version(self) -> int:
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def changed(self) -> bool:
        version = self._version()
        if version == self._seen:
            return False
        self._seen = version
        return True

    def close(self) -> None:
        self._conn.close()


async def follow_commits(
    relay: Wakeable, changed: Callable[[], bool], stop: asyncio.Event, every: float = 0.01
) -> None:
    """Wake `relay` whenever another process commits (a relay apart from the web app).

    Looks every `every` seconds, so a burst of commits makes one batch, not one each.
    """
    while not stop.is_set():
        await asyncio.sleep(every)
        if changed():
            relay.wake()
