"""The relay's leadership on a SQLite file: `flock` on `<db>.relay-lock`.

The kernel lets go of a `flock` when the last descriptor of the open file closes, and
a process's descriptors close when it dies, `kill -9` included. So a relay restarted
after a crash, or standing by in another process, takes over on its next try (every
`SIGNUP_RELAY_POLL_SECONDS`) instead of waiting out the dead holder's lease row, which
took up to `SIGNUP_RELAY_LEASE_SECONDS` (30 s; 27.7 s measured, issue 18).

A file of its own, not the writers' `<db>.writer-lock`: the leader holds this one for
as long as it runs, the writers take theirs for each batch.
"""

from __future__ import annotations

import fcntl
import os

import structlog

from signup.adapters.database import sqlite_file

log = structlog.get_logger(__name__)


def relay_lock_path(database: str) -> str:
    return f"{database}.relay-lock"


class FileLeaderLock:
    """`LeaderLock` on a lock file; each instance is a holder of its own.

    `flock` belongs to the open file, not the process: two instances in one process
    (tests, two relays) exclude each other like two processes do. The file is opened on
    the first `acquire`, in the running relay, never before a fork: a child that
    inherited the descriptor would keep the lock alive past its parent's death.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._held = False

    @classmethod
    def for_database(cls, url: str) -> FileLeaderLock | None:
        """The lock beside a SQLite database file; None where there is no file to share
        (another database, or SQLite in memory: one process only)."""
        path = sqlite_file(url)
        return None if path is None else cls(relay_lock_path(path))

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        if self._held:
            return True
        if self._fd is None:
            # O_CLOEXEC (Python's default): a process this one starts holds no copy.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = True
        return True

    def release(self) -> None:
        fd, self._fd, self._held = self._fd, None, False
        if fd is not None:
            os.close(fd)  # and with it the lock


__all__ = ["FileLeaderLock", "relay_lock_path"]
