"""Engines and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# `full`: every commit syncs the WAL before it returns, so a sign-up's intent is on disk
# before the provider is called and its completion before the 201; a power loss loses
# nothing that was answered or sent on. `normal` syncs only at checkpoints: a power
# loss may undo the last commits (docs/decisions/0017-sqlite-durability.md).
Synchronous = Literal["full", "normal"]


def sqlite_file(url: str) -> str | None:
    """The SQLite database file this URL names; None for another database, or for SQLite
    in memory (one process, nothing on disk to share or lock)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return str(parsed.database)
    return None


def _ensure_sqlite_folder(url: str) -> None:
    if (path := sqlite_file(url)) is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    url: str, *, pool_size: int = 10, writer: bool = False, synchronous: Synchronous = "full"
) -> AsyncEngine:
    """An engine for `url`; a `writer` engine on SQLite takes the write lock at BEGIN.

    SQLite's default deferred transactions fail with SQLITE_BUSY_SNAPSHOT when a
    transaction that has read tries to write after another process committed;
    BEGIN IMMEDIATE waits for the lock (up to the busy timeout) instead.
    """
    _ensure_sqlite_folder(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=1 if writer else pool_size,
            max_overflow=0 if writer else pool_size,
        )
        _sqlite_setup(engine.sync_engine, writer=writer, synchronous=synchronous)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def create_sqlite_writer(url: str, synchronous: Synchronous = "full") -> Engine | None:
    """For a SQLite file: a plain (pysqlite) writer engine with the same settings.

    The unit of work runs each batch on it start to commit without leaving the event
    loop, so a batch costs no hand-over between threads at all. None for other
    databases and for in-memory SQLite (a second engine would see another database).
    """
    engine = _plain_sqlite(url, writer=True, synchronous=synchronous)
    if engine is not None:

        @event.listens_for(engine, "connect")
        def _no_checkpoint_in_commits(dbapi_connection: Any, _record: Any) -> None:
            # The unit of work checkpoints beside the writer instead (see SqlUnitOfWork).
            dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    return engine


def create_sqlite_reader(url: str, synchronous: Synchronous = "full") -> Engine | None:
    """For a SQLite file: a plain engine for quick reads on the event loop."""
    return _plain_sqlite(url, writer=False, synchronous=synchronous)


def _plain_sqlite(url: str, *, writer: bool, synchronous: Synchronous) -> Engine | None:
    if not watchable(url):
        return None
    _ensure_sqlite_folder(url)
    engine = create_sync_engine(
        make_url(url).set(drivername="sqlite+pysqlite"),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    _sqlite_setup(engine, writer=writer, synchronous=synchronous)
    return engine


def _sqlite_setup(engine: Engine, *, writer: bool, synchronous: Synchronous) -> None:
    if synchronous not in ("full", "normal"):  # it is spliced into a PRAGMA below
        raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # On the DBAPI cursor: through exec_driver_sql this one statement cost more of
        # SQLAlchemy's execution path than a small batch's own statements (decision 0002).
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(begin)
        except conn.dialect.loaded_dbapi.Error as exc:
            # Raised here, SQLAlchemy would let the driver's own error through (it wraps
            # only what its execution raises): wrapped, a file whose write lock is not
            # had within the busy timeout ("database is locked") is a `DBAPIError`, which
            # the web app answers 503 with Retry-After, not 500.
            raise DBAPIError.instance(
                begin, None, exc, conn.dialect.loaded_dbapi.Error, hide_parameters=True
            ) from exc
        finally:
            cursor.close()

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook above (SQLAlchemy's recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers run beside the writer. Both levels lose no committed
        # transaction on a process crash; only FULL keeps them through a power loss, at
        # one WAL sync per commit, shared by the batch's sign-ups (see `Synchronous`).
        _wal(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _wal(cursor: Any) -> None:
    """Switch to WAL (kept in the file, so usually it already is).

    Opening a WAL file while another connection checkpoints or closes can answer
    SQLITE_BUSY at once, without the busy handler: "database is locked" on connect,
    seen now and then with two writers on one file. Such a moment passes in
    milliseconds, so the switch is tried again for up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def migrate(url: str) -> None:
    """Bring the database to the newest schema (idempotent; safe beside running services)."""
    # Imported here: Alembic (with Mako and Pygments) is needed only for migrating
    # (docs/decisions/0015).
    from alembic import command
    from alembic.config import Config

    _ensure_sqlite_folder(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


def watchable(url: str) -> bool:
    return sqlite_file(url) is not None
