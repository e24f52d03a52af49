"""The SQLite fast path: the hot path's statements compiled once, run on sqlite3 itself.

SQLAlchemy keeps building the SQL (from the same table definitions, with its own type
processing, so the rows are the same as through it) but not running it: its execution
path cost several times SQLite's own work per statement. Why, and what was measured:
docs/decisions/0002-sqlite-fast-path.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from signup.adapters.sql import statements as st

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Direct:
    """A statement compiled once for SQLite, run on the sqlite3 connection itself."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    selects: bool


@dataclass(frozen=True, slots=True)
class Changed:
    """What a direct INSERT or UPDATE answers: the repositories read only these."""

    rowcount: int
    lastrowid: int


class _NoRows:
    """What a direct SELECT that found nothing answers (a row found goes through
    SQLAlchemy again, for its typed row)."""

    def first(self) -> None:
        return None


_NO_ROWS = _NoRows()


# The statements every sign-up runs in the writer. A new hot-path statement joins this
# set on purpose; anything else still works through SQLAlchemy, only slower. The owner
# lookup finds nothing but for a retry, so only its misses are answered here.
DIRECT = frozenset(
    id(s)
    for s in (
        st.SIGNUP_INSERT,
        st.CONSENT_INSERT,
        *st.SIGNUP_SETTLE.values(),
        st.OUTBOX_INSERT,
        st.ANNOUNCED_EVENT,
        st.ANNOUNCED_INSERT,
        st.SIGNUP_CREATED_FOR,
        st.OUTBOX_PUBLISHED,
    )
)
# Compiled forms by statement and parameter names (None: leave it to SQLAlchemy).
Plans = dict[tuple[int, tuple[str, ...]], _Direct | None]


def _plan(conn: Connection, statement: Executable, keys: tuple[str, ...]) -> _Direct | None:
    if not isinstance(statement, ClauseElement):
        return None
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))
    if not isinstance(compiled, SQLCompiler):
        return None
    names = tuple(compiled.positiontup or ())
    if not set(names) <= set(keys):  # a column default to fill in: SQLAlchemy's job
        return None
    processors = tuple(compiled.binds[n].type.bind_processor(conn.dialect) for n in names)
    return _Direct(compiled.string, names, processors, statement.is_select)


class InlineConnection:
    """An `AsyncConnection` look-alike over a plain `Connection`: awaiting never suspends.

    The repositories await `execute`; over this connection that await completes at once,
    so a unit of work can be driven to its end without suspending (`run_inline`) with the
    very same repository code. Given `plans`, the hot path's statements (`DIRECT`) go
    straight to sqlite3, inside the same transaction.
    """

    __slots__ = ("_conn", "_plans")

    def __init__(self, conn: Connection, plans: Plans | None = None) -> None:
        self._conn = conn
        self._plans = plans

    async def execute(self, statement: Executable, parameters: Any = None) -> Any:
        if self._plans is not None and id(statement) in DIRECT:
            # One parameter set, or several of the same keys (executemany).
            sets = [parameters] if isinstance(parameters, dict) else parameters
            if isinstance(sets, list) and sets and isinstance(sets[0], dict):
                key = (id(statement), tuple(sets[0]))
                if key not in self._plans:
                    self._plans[key] = _plan(self._conn, statement, key[1])
                direct = self._plans[key]
                if direct is not None:
                    answer = self._run(direct, sets)
                    if answer is not None:
                        return answer
        return self._conn.execute(statement, parameters)

    def _run(self, direct: _Direct, sets: list[dict[str, Any]]) -> Changed | _NoRows | None:
        rows = [
            [
                parameters[name] if process is None else process(parameters[name])
                for name, process in zip(direct.names, direct.processors, strict=True)
            ]
            for parameters in sets
        ]
        raw = self._conn.connection.driver_connection
        assert raw is not None
        try:
            if len(rows) == 1:
                cursor = raw.execute(direct.sql, rows[0])
            else:
                cursor = raw.executemany(direct.sql, rows)
        except sqlite3.Error as exc:  # the same exceptions as through SQLAlchemy
            raise DBAPIError.instance(
                direct.sql, rows, exc, sqlite3.Error, hide_parameters=True
            ) from exc
        if not direct.selects:
            return Changed(cursor.rowcount, cursor.lastrowid or 0)
        found = cursor.fetchone() is not None
        cursor.close()
        return None if found else _NO_ROWS


def run_inline(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends (a unit of work on an `InlineConnection`)."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    steps.close()
    raise RuntimeError("a unit of work awaited something other than its transaction")
