"""SQL repositories and the batching unit of work (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from signup.adapters import tables as t
from signup.adapters.database import SQLITE_BUSY_TIMEOUT_MS
from signup.adapters.repository import OutboxEntry, OutboxStatus
from signup.domain.errors import AccountAlreadyCompleted, EmailAlreadyRegistered, RequestInProgress
from signup.domain.events import UserRegistered
from signup.domain.model import Applicant, CreatedAccount, SignUp, SignUpStatus
from signup.service_layer.unit_of_work import Work

T = TypeVar("T")
log = structlog.get_logger(__name__)

# The statements of the hot path, built once: values go in as parameters, so SQLAlchemy
# neither rebuilds them nor recomputes their cache key on every call (that was most of
# the cost of a write). Bound names start with `p_`, apart from the columns' own.
_s, _o = t.signups.c, t.outbox.c
_SIGNUP_INSERT = insert(t.signups)
_SIGNUP_BY_ID = select(t.signups).where(_s.id == bindparam("p_id"))


def _is(status: SignUpStatus) -> ColumnElement[bool]:
    """`status = '<status>'` with the value written into the SQL, never bound.

    The partial indexes are over the status. A bound value that could decide whether
    one of them applies makes SQLite plan the statement again each time the value is
    bound, so at every run: the owner lookup took 58 µs in the service's batches (11 µs
    written in), and 26 µs against 5 µs through sqlite3 alone on 20,000 rows.
    """
    return _s.status == literal_column(f"'{status.value}'")


# The applicant's and the account's e-mail (the same but for case, nearly always): two
# plain parameters rather than an expanding list, so the statement compiles once.
_SIGNUP_CREATED_FOR = select(t.signups).where(
    _s.email.in_([bindparam("p_email"), bindparam("p_other_email")]),
    _s.user_id == bindparam("p_user_id"),
    _is(SignUpStatus.CREATED),
)
# One statement for each state a sign-up may be settled from, for the same reason.
_SIGNUP_SETTLE = {
    expected: update(t.signups).where(_s.id == bindparam("p_id"), _is(expected))
    for expected in SignUpStatus
}
_OUTBOX_INSERT = insert(t.outbox)
# Unpublished entries, oldest first: the relay's batch (exclusive, SQLite) or, narrowed
# to unleased rows and locked, its claim (shared, PostgreSQL).
_OUTBOX_ENTRIES = select(
    _o.id, _o.event_id, _o.routing_key, _o.event_type, _o.payload, _o.created_at, _o.attempts
)
_OUTBOX_UNPUBLISHED = (
    _OUTBOX_ENTRIES.where(_o.published_at.is_(None)).order_by(_o.id).limit(bindparam("p_limit"))
)
_OUTBOX_UNPUBLISHED_AFTER = _OUTBOX_UNPUBLISHED.where(_o.id > bindparam("p_after"))
_OUTBOX_CLAIMABLE = _OUTBOX_UNPUBLISHED.where(
    or_(_o.claimed_until.is_(None), _o.claimed_until < bindparam("p_now"))
).with_for_update(skip_locked=True)
_OUTBOX_CLAIM = (
    update(t.outbox)
    .where(_o.id.in_(bindparam("p_ids", expanding=True)))
    .values(
        claimed_until=bindparam("p_until"),
        claimed_by=bindparam("p_holder"),
        attempts=_o.attempts + 1,
    )
)
# One row a parameter set, run as executemany: compiled once, where an expanding IN
# is rendered again for every batch.
_OUTBOX_PUBLISHED = (
    update(t.outbox)
    .where(_o.event_id == bindparam("p_id"))
    .values(published_at=bindparam("p_at"), claimed_until=null(), last_error=null())
)


def _signup_from_row(row: Any) -> SignUp:
    return SignUp(
        id=row.id,
        applicant=Applicant(row.email, row.given_name, row.family_name),
        status=SignUpStatus(row.status),
        provider=row.provider,
        requested_at=row.requested_at,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint,
        user_id=row.user_id,
        event_id=row.event_id,
        response_status=row.response_status,
        response_body=orjson.loads(row.response_body) if row.response_body else None,
    )


def _entry_from_row(row: Any, attempts: int) -> OutboxEntry:
    return OutboxEntry(
        row.event_id,
        row.routing_key,
        row.event_type,
        row.payload.encode(),
        row.created_at,
        attempts,
        row.id,
    )


_FIXED_AT_ADD = ("email", "given_name", "family_name", "provider", "fingerprint", "requested_at")


def _signup_values(signup: SignUp, now: datetime) -> dict[str, Any]:
    return {
        "email": signup.applicant.email,
        "given_name": signup.applicant.given_name,
        "family_name": signup.applicant.family_name,
        "status": signup.status.value,
        "provider": signup.provider,
        "requested_at": signup.requested_at,
        "updated_at": now,
        "idempotency_key": signup.idempotency_key,
        "fingerprint": signup.fingerprint,
        "user_id": signup.user_id,
        "event_id": signup.event_id,
        "response_status": signup.response_status,
        "response_body": orjson.dumps(signup.response_body).decode()
        if signup.response_body is not None
        else None,
    }


class SqlSignUps:
    def __init__(self, conn: AnyConnection, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._clock = clock

    async def add(self, signup: SignUp) -> None:
        key = signup.idempotency_key
        if key and await self.by_idempotency_key(key) is not None:
            raise RequestInProgress(key)
        try:
            await self._conn.execute(
                _SIGNUP_INSERT, {"id": signup.id, **_signup_values(signup, self._clock())}
            )
        except IntegrityError as exc:  # the same key, committed by another process meanwhile
            if key:
                raise RequestInProgress(key) from exc
            raise

    async def get(self, signup_id: str) -> SignUp | None:
        row = (await self._conn.execute(_SIGNUP_BY_ID, {"p_id": signup_id})).first()
        return _signup_from_row(row) if row else None

    async def by_idempotency_key(self, key: str) -> SignUp | None:
        query = select(t.signups).where(t.signups.c.idempotency_key == key)
        row = (await self._conn.execute(query)).first()
        return _signup_from_row(row) if row else None

    async def unsettled_for_email(self, email: str) -> list[SignUp]:
        query = (
            select(t.signups)
            .where(
                t.signups.c.email == email,
                or_(_is(SignUpStatus.PENDING), _is(SignUpStatus.ABANDONED)),
            )
            .order_by(t.signups.c.requested_at)
        )
        return [_signup_from_row(r) for r in await self._conn.execute(query)]

    async def pending_before(self, cutoff: datetime, limit: int) -> list[SignUp]:
        query = (
            select(t.signups)
            .where(
                _is(SignUpStatus.PENDING),
                t.signups.c.requested_at < cutoff,
            )
            .order_by(t.signups.c.requested_at)
            .limit(limit)
        )
        return [_signup_from_row(r) for r in await self._conn.execute(query)]

    async def created_for(self, user_id: str, email: str, account_email: str) -> SignUp | None:
        params = {
            "p_email": email,
            "p_other_email": account_email,
            "p_user_id": user_id,
        }
        row = (await self._conn.execute(_SIGNUP_CREATED_FOR, params)).first()
        return _signup_from_row(row) if row else None

    async def settle(self, signup: SignUp, *, expected: SignUpStatus) -> bool:
        values = _signup_values(signup, self._clock())
        # Only what settling changes: SQLite rewrites every index over a column named
        # in SET, changed or not (two WAL pages more per completion with all of them).
        # The applicant, provider, fingerprint and request time are fixed at add(); a
        # key is only ever released, when a sign-up is abandoned.
        for fixed in _FIXED_AT_ADD:
            del values[fixed]
        if signup.status is not SignUpStatus.ABANDONED:
            del values["idempotency_key"]
        values["p_id"] = signup.id
        try:
            result = await self._conn.execute(_SIGNUP_SETTLE[expected], values)
        except IntegrityError as exc:  # ux_signups_created_user: another process won
            if signup.status is SignUpStatus.CREATED:
                raise AccountAlreadyCompleted(signup.user_id or "") from exc
            raise
        return bool(result.rowcount)


class SqlOutbox:
    def __init__(self, conn: AnyConnection, written: Callable[[OutboxEntry], None]) -> None:
        self._conn = conn
        self._written = written

    async def add(self, event: UserRegistered) -> None:
        payload = event.to_json()
        result = await self._conn.execute(
            _OUTBOX_INSERT,
            {
                "event_id": event.id,
                "event_type": event.type,
                "routing_key": event.routing_key,
                "payload": payload.decode(),
                "created_at": event.time,
                "attempts": 0,
            },
        )
        # The row's id where the insert ran direct on SQLite (0: not known here).
        position = result.lastrowid if isinstance(result, _Changed) else 0
        self._written(
            OutboxEntry(event.id, event.routing_key, event.type, payload, event.time, 0, position)
        )

    async def claim(
        self, holder: str, until: datetime, now: datetime, limit: int
    ) -> list[OutboxEntry]:
        rows = (await self._conn.execute(_OUTBOX_CLAIMABLE, {"p_now": now, "p_limit": limit})).all()
        if not rows:
            return []
        await self._conn.execute(
            _OUTBOX_CLAIM,
            {"p_ids": [r.id for r in rows], "p_until": until, "p_holder": holder},
        )
        return [_entry_from_row(r, r.attempts + 1) for r in rows]

    async def unpublished(self, limit: int, after: int = 0) -> list[OutboxEntry]:
        rows = await self._conn.execute(
            _OUTBOX_UNPUBLISHED_AFTER, {"p_limit": limit, "p_after": after}
        )
        return [_entry_from_row(r, r.attempts) for r in rows]

    async def mark_published(self, event_ids: list[str], at: datetime) -> None:
        if event_ids:
            await self._conn.execute(
                _OUTBOX_PUBLISHED, [{"p_id": event_id, "p_at": at} for event_id in event_ids]
            )

    async def release(self, event_ids: list[str], error: str) -> None:
        if event_ids:
            await self._conn.execute(
                update(t.outbox)
                .where(t.outbox.c.event_id.in_(event_ids), t.outbox.c.published_at.is_(None))
                .values(claimed_until=None, last_error=error[:500])
            )

    async def status(self) -> OutboxStatus:
        o = t.outbox.c
        # Typed loosely: SQLAlchemy 2.0 and 2.1 infer this row's shape differently.
        pending_row: Any = (
            await self._conn.execute(
                select(func.count(), func.min(o.created_at)).where(o.published_at.is_(None))
            )
        ).one()
        published = (
            await self._conn.execute(select(func.count()).where(o.published_at.is_not(None)))
        ).scalar_one()
        oldest = pending_row[1]
        if isinstance(oldest, str):  # SQLite hands back aggregates untyped
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return OutboxStatus(int(pending_row[0]), oldest, int(published))

    async def select_for_replay(
        self, since: datetime | None, event_id: str | None, limit: int, after_id: int
    ) -> list[tuple[int, OutboxEntry]]:
        o = t.outbox.c
        conditions = [o.id > after_id]
        if since is not None:
            conditions.append(o.created_at >= since)
        if event_id is not None:
            conditions.append(o.event_id == event_id)
        query = _OUTBOX_ENTRIES.where(and_(*conditions)).order_by(o.id).limit(limit)
        return [(r.id, _entry_from_row(r, r.attempts)) for r in await self._conn.execute(query)]


def _same_mailbox(email: str) -> ColumnElement[bool]:
    """Compared case-folded, as Auth0 does, so rows kept as typed before addresses were
    lower-cased still count (ux_users_email_folded is over the same expression)."""
    return func.lower(t.users.c.email) == email.lower()


class SqlUsers:
    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def add(self, account: CreatedAccount) -> None:
        assert account.password_hash, "the local store keeps only hashed passwords"
        if await self.exists(account.email):
            raise EmailAlreadyRegistered(account.email)
        try:
            await self._conn.execute(
                insert(t.users).values(
                    user_id=account.user_id,
                    email=account.email,
                    password_hash=account.password_hash,
                    given_name=account.given_name,
                    family_name=account.family_name,
                    email_verified=account.email_verified,
                    created_at=account.created_at,
                )
            )
        except IntegrityError as exc:  # a concurrent sign-up from another process won
            raise EmailAlreadyRegistered(account.email) from exc

    async def exists(self, email: str) -> bool:
        query = select(t.users.c.user_id).where(_same_mailbox(email))
        return (await self._conn.execute(query)).first() is not None

    async def by_email(self, email: str) -> CreatedAccount | None:
        row = (await self._conn.execute(select(t.users).where(_same_mailbox(email)))).first()
        if row is None:
            return None
        return CreatedAccount(
            user_id=row.user_id,
            email=row.email,
            email_verified=row.email_verified,
            created_at=row.created_at,
            given_name=row.given_name,
            family_name=row.family_name,
        )


class SqlLeases:
    """Named leases: who may act alone (the one relay on SQLite), until when."""

    def __init__(self, conn: AnyConnection) -> None:
        self._conn = conn

    async def acquire(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        row = (await self._conn.execute(select(t.leases).where(t.leases.c.name == name))).first()
        if row is None:
            await self._conn.execute(
                insert(t.leases).values(name=name, holder=holder, expires_at=until)
            )
            return True
        if row.holder != holder and row.expires_at > now:
            return False
        await self._conn.execute(
            update(t.leases).where(t.leases.c.name == name).values(holder=holder, expires_at=until)
        )
        return True

    async def release(self, name: str, holder: str) -> None:
        await self._conn.execute(
            delete(t.leases).where(t.leases.c.name == name, t.leases.c.holder == holder)
        )


@dataclass(frozen=True, slots=True)
class _Direct:
    """A statement compiled once for SQLite, run on the sqlite3 connection itself."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    selects: bool


@dataclass(frozen=True, slots=True)
class _Changed:
    """What a direct INSERT or UPDATE answers: the repositories read only these."""

    rowcount: int
    lastrowid: int


class _NoRows:
    """What a direct SELECT that found nothing answers (a row found goes through
    SQLAlchemy again, for its typed row)."""

    def first(self) -> None:
        return None


_NO_ROWS = _NoRows()


# The statements every sign-up runs in the writer. SQLAlchemy's execution path cost
# several times SQLite's own work per statement; these skip it once compiled (by
# SQLAlchemy, with its own type processing, so the rows are the same as through it).
# The owner lookup finds nothing but for a retry, so only its misses are answered here.
_DIRECT = frozenset(
    id(s)
    for s in (
        _SIGNUP_INSERT,
        *_SIGNUP_SETTLE.values(),
        _OUTBOX_INSERT,
        _SIGNUP_CREATED_FOR,
        _OUTBOX_PUBLISHED,
    )
)
_Plans = dict[tuple[int, tuple[str, ...]], _Direct | None]


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

    The repositories above await `execute`; over this connection that await completes
    at once, so a unit of work can be driven to its end without suspending (see
    `SqlUnitOfWork`) with the very same repository code. The hot path's writes go
    straight to sqlite3 (see `_DIRECT`), inside the same transaction.
    """

    __slots__ = ("_conn", "_plans")

    def __init__(self, conn: Connection, plans: _Plans | None = None) -> None:
        self._conn = conn
        self._plans = plans

    async def execute(self, statement: Executable, parameters: Any = None) -> Any:
        if self._plans is not None and id(statement) in _DIRECT:
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

    def _run(self, direct: _Direct, sets: list[dict[str, Any]]) -> _Changed | _NoRows | None:
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
            return _Changed(cursor.rowcount, cursor.lastrowid or 0)
        found = cursor.fetchone() is not None
        cursor.close()
        return None if found else _NO_ROWS


AnyConnection = AsyncConnection | InlineConnection


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


class SqlTransaction:
    def __init__(self, conn: AnyConnection, clock: Callable[[], datetime]) -> None:
        self.outbox_entries: list[OutboxEntry] = []
        self.signups = SqlSignUps(conn, clock)
        self.outbox = SqlOutbox(conn, self.outbox_entries.append)
        self.users = SqlUsers(conn)
        self.leases = SqlLeases(conn)


def _checkpoint(database: str, rewind_above: int) -> None:
    """Copy the WAL back into the database (PASSIVE); past `rewind_above` bytes, once
    more with every writer waiting, so that the next commit rewinds the WAL.

    SQLite rewinds the WAL (writes from its start again) only when a commit finds all of
    it copied back. A PASSIVE checkpoint beside writers that never pause ends with the
    frames they appended meanwhile still to copy, so under sustained load the WAL never
    rewound: 448 MB after 30 s of the benchmark's load, ~20 MB more a second. The second pass
    copies only what came during the first; the writers wait for it (its copy and the
    database's fsync: 3 ms typically, 14 ms at most measured) on the lock they take
    turns with, in a thread of theirs, never on the event loop.
    """
    conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        if pages * page_size > rewind_above:
            # A descriptor of its own, not the unit of work's: `flock` excludes other
            # open files only, so on the writer's own descriptor it would not wait.
            lock = os.open(_writer_lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                os.close(lock)  # and with it the lock
    except sqlite3.Error as exc:  # e.g. another process's checkpoint is running
        log.debug("uow.checkpoint_skipped", reason=str(exc))
    finally:
        conn.close()


def _writer_lock_path(database: str) -> str:
    return f"{database}.writer-lock"


@dataclass
class _Job:
    work: Work[Any]
    future: asyncio.Future[Any]


@dataclass
class SqlUnitOfWork:
    """Commits many concurrent units of work in one transaction (group commit).

    Whatever work is waiting runs in a single transaction that commits once: under
    load a commit (and its fsync) is shared by many sign-ups, so durability costs
    little per request. On SQLite the batch is a callback of the event loop, scheduled
    by the first work that finds none scheduled; on PostgreSQL one writer task takes
    the batches. If any work in a batch fails, the batch is rolled back and each work
    re-run in its own transaction, so one failure never takes its neighbours with it.
    """

    writer: AsyncEngine
    reader: AsyncEngine
    clock: Callable[[], datetime]
    max_batch: int = 256
    # Told of the outbox rows each commit wrote, right after it (the relay).
    on_outbox_written: Callable[[list[OutboxEntry]], None] | None = None
    # SQLite: a plain engine on the same file. Each batch then runs start to commit on
    # the event loop itself, a few milliseconds at most: through aiosqlite every
    # statement cost several hand-overs between threads, and a writer thread of its
    # own waited for the interpreter lock after each SQLite call, so under load the
    # writer, not the CPU, set the pace.
    inline_writer: Engine | None = None
    inline_reader: Engine | None = None
    checkpoint_every: float = 0.5
    # SQLite: past this size the WAL is made to rewind (see `_checkpoint`), and a WAL
    # that grew beyond it is cut back to it when it rewinds.
    wal_limit_bytes: int = 64 * 1024 * 1024
    # SQLite: at least this long between two commits' starts. At moderate load works
    # arrive one by one, and a commit each (its WAL pages, its locks) cost more than
    # the works themselves; under full load the loop's turns are longer than this.
    flush_gap: float = 0.001
    _queue: asyncio.Queue[_Job] | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _checkpointer: asyncio.Task[None] | None = field(default=None, init=False)
    _committing: bool = field(default=False, init=False)
    # SQLite: work waiting for the next flush, and whether one is scheduled (or waiting
    # for another process's transaction to end).
    _pending: list[_Job] = field(default_factory=list, init=False)
    _flush_due: bool = field(default=False, init=False)
    _lock_waiter: asyncio.Task[None] | None = field(default=None, init=False)
    _last_flush: float = field(default=0.0, init=False)
    _plans: _Plans = field(default_factory=dict, init=False)
    _lock_fd: int | None = field(default=None, init=False)
    _writer_conn: Connection | None = field(default=None, init=False)
    batches: int = field(default=0, init=False)

    async def run(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self.inline_writer is not None:
            if self._checkpointer is None:
                self._checkpointer = asyncio.create_task(
                    self._checkpoint_forever(str(self.inline_writer.url.database)),
                    name="uow-checkpoint",
                )
            # Every work added before the loop comes round to the flush shares its
            # transaction (and its commit).
            self._pending.append(_Job(work, future))
            if not self._flush_due:
                self._flush_due = True
                wait = self._last_flush + self.flush_gap - loop.time()
                if wait > 0:
                    loop.call_later(wait, self._flush)
                else:
                    loop.call_soon(self._flush)
            return await future
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._write_forever(self._queue), name="uow-writer")
        self._queue.put_nowait(_Job(work, future))
        return await future

    async def read(self, work: Work[T], *, quick: bool = False) -> T:
        if quick and self.inline_reader is not None:
            # On the event loop: an indexed read on SQLite takes microseconds, a trip
            # through aiosqlite's thread (and back) costs far more than that.
            with self.inline_reader.connect() as sync_conn:
                return run_inline(work(SqlTransaction(InlineConnection(sync_conn), self.clock)))
        async with self.reader.connect() as conn:
            return await work(SqlTransaction(conn, self.clock))

    async def close(self) -> None:
        await self._drained()
        if self._lock_waiter is not None:
            self._lock_waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lock_waiter
            self._lock_waiter = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None
        for engine in (self.inline_writer, self.inline_reader):
            if engine is not None:
                engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _drained(self) -> None:
        """Wait (about 5 s at most) for work already accepted, by either writer."""
        for _ in range(500):
            flushed = not self._pending and not self._flush_due
            written = (self._queue is None or self._queue.empty()) and not self._committing
            if flushed and written:
                return
            await asyncio.sleep(0.01)

    def _flush(self) -> None:
        """SQLite: run the pending work, start to commit, in this callback of the loop."""
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
        jobs, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        try:
            outcomes, written = self._commit_inline(jobs)
        except Exception as exc:  # e.g. the file cannot be opened: fail, never leave waiting
            outcomes, written = [(False, exc)] * len(jobs), []
        finally:
            self._unlock_file()
            self._flush_due = False
        self._deliver(jobs, outcomes, written)
        if self._pending:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _write_forever(self, queue: asyncio.Queue[_Job]) -> None:
        """PostgreSQL: one writer task takes whatever work is waiting, commits it once."""
        while True:
            jobs = [await queue.get()]
            while len(jobs) < self.max_batch and not queue.empty():
                jobs.append(queue.get_nowait())
            self._committing = True
            try:
                outcomes, written = await self._commit(jobs)
            finally:
                self._committing = False
            self._deliver(jobs, outcomes, written)

    def _deliver(
        self, jobs: list[_Job], outcomes: list[tuple[bool, Any]], written: list[OutboxEntry]
    ) -> None:
        """Answer each work's caller; tell the relay of the outbox rows committed."""
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        if written and self.on_outbox_written is not None:
            try:
                self.on_outbox_written(written)
            except Exception:  # the rows are committed: the relay's poll finds them
                log.exception("uow.outbox_notice_failed")

    async def _checkpoint_forever(self, database: str) -> None:
        """Copy the WAL back into the database file beside the writer, never inside it.

        SQLite's own checkpoint runs inside whichever commit crosses 1,000 pages, with
        its fsyncs, while that commit holds the write lock: 40-120 ms stops of every
        writer. The writer's connection has it turned off (`create_sqlite_writer`);
        this task runs a PASSIVE checkpoint, which never waits for or blocks a writer,
        in a thread (SQLite lets go of the interpreter lock while it works).
        """
        done = self.batches
        while True:
            await asyncio.sleep(self.checkpoint_every)
            if self.batches != done:
                done = self.batches
                # Shielded: a checkpoint under way finishes even if this task is
                # cancelled (its connection is its own and closes with it).
                await asyncio.shield(asyncio.to_thread(_checkpoint, database, self.wal_limit_bytes))

    def _try_lock_file(self) -> bool:
        """Writers of every process on this file take turns through a lock file.

        SQLite makes a writer that finds the file locked sleep and try again (1, 2, 5,
        10 … 100 ms apart): with the web app and a relay process writing to the same
        file, those sleeps stalled whole batches. Waiting on `flock` instead wakes the
        next writer the moment the lock is let go; the wait itself happens in a thread
        (`_wait_lock_file`), so the event loop never stops for another process.
        """
        if self._lock_fd is None:
            assert self.inline_writer is not None
            path = _writer_lock_path(str(self.inline_writer.url.database))
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

    def _commit_inline(self, jobs: list[_Job]) -> tuple[list[tuple[bool, Any]], list[OutboxEntry]]:
        """The batch in one transaction (on the event loop); on failure, each alone."""
        conn = self._writer_connection()
        try:
            with conn.begin():
                tx = SqlTransaction(InlineConnection(conn, self._plans), self.clock)
                results = [run_inline(job.work(tx)) for job in jobs]
        except Exception as exc:
            if len(jobs) == 1:
                return [(False, exc)], []
            outcomes: list[tuple[bool, Any]] = []
            written: list[OutboxEntry] = []
            for job in jobs:
                alone, wrote = self._commit_inline([job])
                outcomes += alone
                written += wrote
            return outcomes, written
        self.batches += 1
        return [(True, result) for result in results], tx.outbox_entries

    def _writer_connection(self) -> Connection:
        """The writer's one connection, kept: taking it from the pool and handing it back
        (with its reset) for every batch cost more than a small batch's statements."""
        assert self.inline_writer is not None
        conn = self._writer_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._writer_conn = self.inline_writer.connect()
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA journal_size_limit={int(self.wal_limit_bytes)}")
        return conn

    async def _commit(self, jobs: list[_Job]) -> tuple[list[tuple[bool, Any]], list[OutboxEntry]]:
        """The asyncio twin of `_commit_inline` (PostgreSQL)."""
        try:
            async with self.writer.begin() as conn:
                tx = SqlTransaction(conn, self.clock)
                results = [await job.work(tx) for job in jobs]
        except Exception as exc:
            if len(jobs) == 1:
                return [(False, exc)], []
            outcomes: list[tuple[bool, Any]] = []
            written: list[OutboxEntry] = []
            for job in jobs:
                alone, wrote = await self._commit([job])
                outcomes += alone
                written += wrote
            return outcomes, written
        self.batches += 1
        return [(True, result) for result in results], tx.outbox_entries
